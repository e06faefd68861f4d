// Prints a presigned GET and a presigned PUT URL for one object, made by the SDK's own
// presigner (@aws-sdk/s3-request-presigner), as JSON: {"get": URL, "put": URL}.
//
//   node presign.mjs --endpoint URL --region REGION --access-key AK --secret-key SK \
//       --bucket BUCKET --key KEY [--expires SECONDS] [--checksum-crc32 BASE64] \
//       [--request-checksum-calculation WHEN_SUPPORTED|WHEN_REQUIRED]
//
// With the SDK's defaults (requestChecksumCalculation WHEN_SUPPORTED) the PUT URL
// carries x-amz-sdk-checksum-algorithm=CRC32 and x-amz-checksum-crc32: the CRC32 given
// with --checksum-crc32 (PutObject's ChecksumCRC32, the body's checksum the application
// knows), or else the SDK's own, of the empty body it has when presigning (AAAAAA==).
// WHEN_REQUIRED leaves both out.
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

import { fail, makeClient, parseOptions } from "./options.mjs";

const EXTRA = " [--expires SECONDS] [--checksum-crc32 BASE64] " +
  "[--request-checksum-calculation WHEN_SUPPORTED|WHEN_REQUIRED]";
const [options, rest] = parseOptions(process.argv.slice(2), "presign.mjs", EXTRA);
const {
  "--expires": expires = "300",
  "--checksum-crc32": crc32,
  "--request-checksum-calculation": calculation,
  ...unknown
} = rest;
if (Object.keys(unknown).length) fail(`unknown arguments: ${Object.keys(unknown).join(", ")}`);

const client = makeClient(options, calculation ? { requestChecksumCalculation: calculation } : {});
const target = { Bucket: options.bucket, Key: options.key };
const expiresIn = Number(expires);
const urls = {
  get: await getSignedUrl(client, new GetObjectCommand(target), { expiresIn }),
  put: await getSignedUrl(client, new PutObjectCommand(
    crc32 ? { ...target, ChecksumCRC32: crc32 } : target), { expiresIn }),
};
process.stdout.write(JSON.stringify(urls) + "\n");
