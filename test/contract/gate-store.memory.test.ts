import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import { gateStoreContract } from "./gate-store.contract.js";

// One process: every handle is the same store.
gateStoreContract("memory", async (handles) => {
  const store = new MemoryGateStore();
  return Array.from({ length: handles }, () => store);
});
