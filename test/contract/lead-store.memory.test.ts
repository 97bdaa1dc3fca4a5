import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { leadStoreContract } from "./lead-store.contract.js";

leadStoreContract("memory", async () => new MemoryLeadStore());
