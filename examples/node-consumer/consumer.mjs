#!/usr/bin/env node
// An external consumer of the fulfilment events, written from asyncapi.yaml alone:
// kafkajs, the topic names, and the envelope the document describes (CloudEvents 1.0
// in Kafka binary mode: the value is the event's JSON, the attributes are ce_* headers,
// the key is the stream id).
//
//   npm ci && node consumer.mjs --brokers 127.0.0.1:59092 --group my-team --from-beginning \
//     --topics fulfilment.order,fulfilment.stock,fulfilment.payment
//
// It prints one line per event: position, type, stream@version, schema version, payload.
// As the document advises it
// - uses its own consumer group, and reads from the beginning only when asked
//   (`fromBeginning` is kafkajs's auto.offset.reset=earliest);
// - deduplicates redeliveries by keeping the last applied ce_streamversion per ce_subject;
// - does not guess at a ce_type it does not know, or a ce_schemaversion above the one it was
//   written for: it reports the record on stderr and skips it (a real consumer would
//   dead-letter it, or stop and alert, if it needs that event).
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';

// The types and schema versions asyncapi.yaml declares (its info.version 2.0.0).
const KNOWN = {
  OrderPlaced: 1, OrderConfirmed: 1, OrderRejected: 1, OrderCancelled: 1,
  ProductRegistered: 2, ProductPriceChanged: 1, ProductDeactivated: 1, ProductActivated: 1,
  StockReceived: 1, StockReserved: 1, StockReservationFailed: 1,
  StockReservationReleased: 1, StockReservationCommitted: 1,
  PaymentRequested: 1, PaymentAuthorized: 1, PaymentDeclined: 1, PaymentVoided: 1,
  PaymentRefunded: 1,
};

const { values } = parseArgs({
  options: {
    brokers: { type: 'string', default: process.env.KAFKA_BOOTSTRAP_SERVERS ?? '127.0.0.1:59092' },
    group: { type: 'string', default: 'node-example' },
    topics: { type: 'string', default: 'fulfilment.order,fulfilment.stock,fulfilment.payment' },
    'from-beginning': { type: 'boolean', default: false },
  },
});
const topics = values.topics.split(',');

// kafkajs logs to stdout by default; keep stdout for events.
const toStderr = () => ({ namespace, log }) => {
  process.stderr.write(`kafkajs ${namespace}: ${log.message}\n`);
};

const kafka = new Kafka({
  clientId: 'fulfilment-node-example',
  brokers: values.brokers.split(','),
  logLevel: logLevel.WARN,
  logCreator: toStderr,
});
const consumer = kafka.consumer({ groupId: values.group });

function headersOf(message) {
  const headers = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    headers[name] = Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
  }
  return headers;
}

// JSON with sorted keys, so a line reads the same whatever order the producer used.
function sortedJson(value) {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${sortedJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const lastVersion = new Map(); // per stream; a real consumer keeps this with its own state

async function handle({ message }) {
  const ce = headersOf(message);
  const type = ce.ce_type;
  const version = Number(ce.ce_schemaversion);
  if (!(type in KNOWN) || !(version <= KNOWN[type])) {
    process.stderr.write(`skipped ${type} schema v${ce.ce_schemaversion} at position ${ce.ce_position}: not known to this consumer\n`);
    return;
  }
  const stream = ce.ce_subject;
  const streamVersion = Number(ce.ce_streamversion);
  if (streamVersion <= (lastVersion.get(stream) ?? -1)) return; // a redelivery: already applied
  lastVersion.set(stream, streamVersion);
  const payload = JSON.parse(message.value.toString('utf8'));
  process.stdout.write(
    `${ce.ce_position} ${type} ${stream}@${streamVersion} (schema v${version}) ${sortedJson(payload)}\n`,
  );
}

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await consumer.disconnect();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

await consumer.connect();
await consumer.subscribe({ topics, fromBeginning: values['from-beginning'] });
await consumer.run({ eachMessage: handle });
