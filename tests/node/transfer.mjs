// One object up and down as an application moves files with the SDK: uploaded from --file
// either by PutObject (--via put: a Buffer, the SDK's default CRC32 in a header) or by
// lib-storage's Upload (--via upload: its defaults, one PutObject under 5 MiB and 5 MiB
// parts above), then read back by GetObject (written to --out), by a ranged GetObject of
// bytes --range-start..--range-end (written to --range-out; skipped when --range-end is
// below --range-start, as for an empty object), and listed by ListObjectsV2 with the key
// as prefix. Prints JSON: what each response said.
//
//   node transfer.mjs --endpoint URL --region REGION --access-key AK --secret-key SK \
//       --bucket BUCKET --key KEY --file IN --out OUT --range-out OUT2 \
//       --range-start N --range-end M [--via put|upload]
import { readFileSync, writeFileSync } from "node:fs";

import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";

import { fail, makeClient, parseOptions } from "./options.mjs";

const EXTRA = " --file IN --out OUT --range-out OUT2 --range-start N --range-end M " +
  "[--via put|upload]";
const [options, rest] = parseOptions(process.argv.slice(2), "transfer.mjs", EXTRA);
const {
  "--file": file, "--out": out, "--range-out": rangeOut, "--range-start": start,
  "--range-end": end, "--via": via = "put", ...unknown
} = rest;
if (!file || !out || !rangeOut || start === undefined || end === undefined) {
  fail("--file, --out, --range-out, --range-start and --range-end are required");
}
if (via !== "put" && via !== "upload") fail(`--via is put or upload, not ${via}`);
if (Object.keys(unknown).length) fail(`unknown arguments: ${Object.keys(unknown).join(", ")}`);

const client = makeClient(options);
const target = { Bucket: options.bucket, Key: options.key };
const body = readFileSync(file);

let put;
if (via === "put") {
  put = await client.send(new PutObjectCommand({ ...target, Body: body }));
} else {
  const parts = [];
  const upload = new Upload({ client, params: { ...target, Body: body } });
  upload.on("httpUploadProgress", (progress) => {
    if (progress.part !== undefined && !parts.includes(progress.part)) parts.push(progress.part);
  });
  put = { ...(await upload.done()), Parts: parts.length };
}

// transformToByteArray consumes the stream; the SDK validates the response checksum (when
// the server sent one for the whole object) as the stream ends: a mismatch throws here.
const got = await client.send(new GetObjectCommand(target));
writeFileSync(out, await got.Body.transformToByteArray());

let ranged = null;
if (Number(end) >= Number(start)) {
  const range = `bytes=${start}-${end}`;
  const part = await client.send(new GetObjectCommand({ ...target, Range: range }));
  writeFileSync(rangeOut, await part.Body.transformToByteArray());
  ranged = { ContentRange: part.ContentRange, ContentLength: part.ContentLength };
}

const listed = await client.send(new ListObjectsV2Command({
  Bucket: options.bucket, Prefix: options.key,
}));
process.stdout.write(JSON.stringify({
  put: { ETag: put.ETag, ChecksumCRC32: put.ChecksumCRC32 ?? null, Parts: put.Parts ?? null,
         ServerSideEncryption: put.ServerSideEncryption ?? null },
  get: { ETag: got.ETag, ContentLength: got.ContentLength,
         ServerSideEncryption: got.ServerSideEncryption ?? null },
  range: ranged,
  list: (listed.Contents ?? []).map((o) => ({ Key: o.Key, Size: o.Size, ETag: o.ETag })),
}) + "\n");
