/**
 * The task store conformance suite on the in-memory store.
 *
 * @module
 */
import { MemoryTaskStore } from "../../server/stores/memory.ts";
import { storeConformance } from "../conformance/task_store.ts";

storeConformance("memory store", () => {
  const store = new MemoryTaskStore();
  return Promise.resolve({ store, [Symbol.asyncDispose]: () => store.close() });
});
