// A TypeScript host of the installed package, type-checked under the strictest common flags with
// skipLibCheck off: dialgate's .d.ts must compile without @types/* of its own dependencies.
import {
  type Alert,
  type createCallbackHandler,
  createDispatcher,
  type DialRequest,
  type DialResult,
  type Dispatcher,
  type DispatcherEvents,
  type LeadInput,
  MemoryLeadStore,
  type PostgresLeadStore,
  type Provider,
  type RedisGateStore,
  ValidationError,
} from "dialgate";

class EchoProvider implements Provider {
  readonly name = "echo";
  async makeCall(req: DialRequest): Promise<DialResult> {
    return { kind: "placed", callId: `call-${req.dialRef}` };
  }
}

const dispatcher: Dispatcher = createDispatcher({
  config: { concurrency: 10, rateLimit: { rules: [{ maxCalls: 7, windowSeconds: 3600 }] } },
  leadStore: new MemoryLeadStore(),
  providers: [new EchoProvider()],
  numbers: [{ id: "n1", e164: "+15550000001", provider: "echo", maxChannels: 2, pool: true }],
  templates: [{ id: "reminders", resellerId: "acme" }],
});

dispatcher.on("lead:dialled", ({ leadId, callId }: DispatcherEvents["lead:dialled"]) => {
  const text: string = `${leadId} ${callId}`;
  return text;
});
dispatcher.on("alert", (alert: Alert) => alert.severity);

const lead: LeadInput = { id: "order-42", phone: "+14155550100", templateId: "reminders" };

export async function main(): Promise<void> {
  await dispatcher.start();
  try {
    await dispatcher.submit(lead);
  } catch (error) {
    if (error instanceof ValidationError) console.log(error.path, error.problem);
  }
  await dispatcher.stop();
}

// Only the types matter here: the shared-store adapters and the callback handler as a host names them.
export type Stores = [PostgresLeadStore, RedisGateStore, ReturnType<typeof createCallbackHandler>];
