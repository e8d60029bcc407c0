// amqplib (npm), unmodified, against a real `fjord serve`: AMQP_URL names
// the broker. Uses node's own test runner (node --test).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const amqp = require('amqplib');

const url = process.env.AMQP_URL;
const unique = (p) => `${p}-${process.pid}-${Math.random().toString(16).slice(2, 10)}`;

async function getWithin(ch, q, opts = {}) {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    const m = await ch.get(q, opts);
    if (m) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

test('confirm channel, topic exchange, consume with prefetch and acks', async () => {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    const x = unique('node-topic');
    await ch.assertExchange(x, 'topic', { durable: true });
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, x, 'logs.#');
    for (let i = 0; i < 20; i++) {
      ch.publish(x, i % 2 ? 'logs.app.error' : 'other.key', Buffer.from(`m${i}`), { persistent: true, headers: { n: i } });
    }
    await ch.waitForConfirms();
    const consumer = await conn.createChannel();
    await consumer.prefetch(3);
    const got = [];
    await new Promise((resolve) => {
      consumer.consume(queue, (msg) => {
        got.push([msg.content.toString(), msg.properties.headers.n, msg.fields.routingKey]);
        consumer.ack(msg);
        if (got.length === 10) resolve();
      });
    });
    assert.deepStrictEqual(got.map((g) => g[0]), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19].map((i) => `m${i}`));
    assert.strictEqual(got[0][1], 1);
    assert.strictEqual(got[0][2], 'logs.app.error');
  } finally {
    await conn.close();
  }
});

test('nack requeues, reject dead-letters with x-death, channel errors stay on their channel', async () => {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    const dlq = unique('node-dlq');
    await ch.assertQueue(dlq);
    const work = unique('node-work');
    await ch.assertQueue(work, { deadLetterExchange: '', deadLetterRoutingKey: dlq });
    ch.sendToQueue(work, Buffer.from('poison'));
    await ch.waitForConfirms();
    const first = await getWithin(ch, work);
    assert.strictEqual(first.fields.redelivered, false);
    ch.nack(first, false, true);
    const again = await getWithin(ch, work);
    assert.strictEqual(again.fields.redelivered, true);
    ch.reject(again, false);
    const dead = await getWithin(ch, dlq, { noAck: true });
    assert.strictEqual(dead.content.toString(), 'poison');
    assert.strictEqual(dead.properties.headers['x-death'][0].reason, 'rejected');
    assert.strictEqual(dead.properties.headers['x-death'][0].queue, work);

    const bad = await conn.createChannel();
    bad.on('error', () => {});
    await assert.rejects(bad.checkQueue(unique('missing')), /404/);
    const ok = await conn.createChannel();
    assert.ok((await ok.checkQueue(work)).queue === work);
  } finally {
    await conn.close();
  }
});
