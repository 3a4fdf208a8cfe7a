/**
 * Unit tests of `shared/blob_keys.ts`: one key builder and one pattern per kind of object.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  isUploadOf,
  OUTPUT_KEY,
  outputKey,
  outputTaskId,
  PAYLOAD_KEY,
  payloadKey,
  UPLOAD_KEY,
  uploadKey,
  uploadOwnerTag,
  UPLOADS_PREFIX,
} from "../../shared/blob_keys.ts";

const id = "0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4";

Deno.test("blob keys: each kind has its own key for a task or upload id", () => {
  assert.equal(payloadKey(id), `tasks/${id}/payload`);
  assert.equal(outputKey(id), `tasks/${id}/output`);
  assert.equal(uploadKey(id, "ana"), `uploads/${uploadOwnerTag("ana")}/${id}`);
  assert.ok(uploadKey(id, "ana").startsWith(UPLOADS_PREFIX));
});

Deno.test("blob keys: each pattern recognises its own kind and no other", () => {
  const keys = { payload: payloadKey(id), output: outputKey(id), upload: uploadKey(id, "ana") };
  const patterns = { payload: PAYLOAD_KEY, output: OUTPUT_KEY, upload: UPLOAD_KEY };
  for (const [kind, pattern] of Object.entries(patterns)) {
    for (const [other, key] of Object.entries(keys)) {
      assert.equal(pattern.test(key), kind === other, `${kind} pattern on ${other} key "${key}"`);
    }
  }
});

Deno.test("blob keys: patterns reject look-alikes, traversal and ids of another length", () => {
  for (
    const key of [
      `tasks/${id}/output/x`,
      `x/tasks/${id}/output`,
      "tasks/../uploads/x/output",
      `tasks/${id.slice(1)}/output`,
      `tasks/${id.toUpperCase()}/output`,
      `uploads/${id}/`,
      `uploads/../${id.slice(3)}`,
      "",
    ]
  ) {
    assert.equal(OUTPUT_KEY.test(key), false, key);
    assert.equal(UPLOAD_KEY.test(key), false, key);
    assert.equal(PAYLOAD_KEY.test(key), false, key);
  }
});

Deno.test("blob keys: an upload's key records its owner, and an output's key its task", () => {
  assert.equal(isUploadOf(uploadKey(id, "ana"), "ana"), true);
  assert.equal(isUploadOf(uploadKey(id, "ana"), "bob"), false);
  assert.equal(isUploadOf(`uploads/${id}`, "ana"), false);
  assert.match(uploadOwnerTag("ana"), /^[0-9a-f]{32}$/);
  assert.notEqual(uploadOwnerTag("ana"), uploadOwnerTag("bob"));
  assert.equal(outputTaskId(outputKey(id)), id);
  assert.equal(outputTaskId(payloadKey(id)), undefined);
});
