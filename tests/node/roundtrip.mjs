// PutObject then GetObject through the SDK's client, with its default checksum behaviour,
// as an application does it. The body is read from --file and sent either as a Buffer
// (the SDK computes CRC32 up front and sends it as a header) or as a stream of known
// length (--body stream: aws-chunked framing with the CRC32 in a trailer). What GetObject
// returns is written to --out. Prints JSON: what each response said.
//
//   node roundtrip.mjs --endpoint URL --region REGION --access-key AK --secret-key SK \
//       --bucket BUCKET --key KEY --file IN --out OUT [--body buffer|stream]
import { createReadStream, readFileSync, statSync, writeFileSync } from "node:fs";

import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";

import { fail, makeClient, parseOptions } from "./options.mjs";

const EXTRA = " --file IN --out OUT [--body buffer|stream]";
const [options, rest] = parseOptions(process.argv.slice(2), "roundtrip.mjs", EXTRA);
const { "--file": file, "--out": out, "--body": kind = "buffer", ...unknown } = rest;
if (!file || !out) fail("--file and --out are required");
if (kind !== "buffer" && kind !== "stream") fail(`--body is buffer or stream, not ${kind}`);
if (Object.keys(unknown).length) fail(`unknown arguments: ${Object.keys(unknown).join(", ")}`);

const client = makeClient(options);
const target = { Bucket: options.bucket, Key: options.key };
const body = kind === "buffer" ? readFileSync(file) : createReadStream(file);
const put = await client.send(new PutObjectCommand({
  ...target, Body: body, ContentLength: statSync(file).size,
}));
const got = await client.send(new GetObjectCommand(target));
// transformToByteArray consumes the stream, and the SDK validates the response checksum
// (when the server sent one) as the stream ends: a mismatch throws here.
writeFileSync(out, await got.Body.transformToByteArray());
process.stdout.write(JSON.stringify({
  put: { ETag: put.ETag, ChecksumCRC32: put.ChecksumCRC32 ?? null,
         ServerSideEncryption: put.ServerSideEncryption ?? null },
  get: { ETag: got.ETag, ContentLength: got.ContentLength,
         ChecksumCRC32: got.ChecksumCRC32 ?? null,
         ServerSideEncryption: got.ServerSideEncryption ?? null },
}) + "\n");
