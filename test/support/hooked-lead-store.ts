/** A MemoryLeadStore that can pause chosen reads, to act between an actor's claim and its gates. */
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import type { Template } from "../../src/machines/ports.js";

export class HookedLeadStore extends MemoryLeadStore {
  /** Awaited before every template read (the first thing the check gate does). */
  beforeTemplate: (() => Promise<void>) | null = null;

  override async template(id: string): Promise<Template | null> {
    await this.beforeTemplate?.();
    return super.template(id);
  }
}
