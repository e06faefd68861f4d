// What presign.mjs, roundtrip.mjs and transfer.mjs are told: the endpoint, region,
// credentials, bucket and key, from `--name value` arguments or else the environment
// (ENCPROXY_TEST_*, and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the credentials). A
// missing one stops the script with exit status 2 and a message naming it.
import { S3Client } from "@aws-sdk/client-s3";

const SOURCES = {
  endpoint: "ENCPROXY_TEST_ENDPOINT",
  region: "ENCPROXY_TEST_REGION",
  accessKey: "AWS_ACCESS_KEY_ID",
  secretKey: "AWS_SECRET_ACCESS_KEY",
  bucket: "ENCPROXY_TEST_BUCKET",
  key: "ENCPROXY_TEST_KEY",
};
const FLAGS = {
  "--endpoint": "endpoint", "--region": "region", "--access-key": "accessKey",
  "--secret-key": "secretKey", "--bucket": "bucket", "--key": "key",
};

export function usage(script, extra = "") {
  return `usage: node ${script} --endpoint URL --region REGION --access-key AK --secret-key SK ` +
    `--bucket BUCKET --key KEY${extra}\n(or the environment: ` +
    `${Object.values(SOURCES).join(", ")})`;
}

// Parses argv into the common options and returns [options, rest], rest holding the
// flags this module does not know (each with its value) for the script to read.
export function parseOptions(argv, script, extra = "") {
  const options = {};
  const rest = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (!flag.startsWith("--") || value === undefined) {
      fail(`bad arguments near ${JSON.stringify(flag)}\n${usage(script, extra)}`);
    }
    if (flag in FLAGS) options[FLAGS[flag]] = value;
    else rest[flag] = value;
  }
  for (const [name, variable] of Object.entries(SOURCES)) {
    options[name] ??= process.env[variable];
    if (!options[name]) fail(`missing ${name}\n${usage(script, extra)}`);
  }
  return [options, rest];
}

export function fail(message) {
  process.stderr.write(message + "\n");
  process.exit(2);
}

// The SDK's client as an application would make it: path-style addressing (encproxy
// answers no wildcard DNS), SigV4, and everything else left at the SDK's defaults, the
// checksum behaviour (CRC32 on uploads, checksum mode on downloads) among them unless
// `config` overrides it.
export function makeClient(options, config = {}) {
  return new S3Client({
    endpoint: options.endpoint,
    region: options.region,
    forcePathStyle: true,
    credentials: { accessKeyId: options.accessKey, secretAccessKey: options.secretKey },
    maxAttempts: 1,
    ...config,
  });
}
