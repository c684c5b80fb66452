// A shop backend sending click events to streamrec with KafkaJS, a pure-JavaScript client.
// Each event is JSON keyed by its user id; KafkaJS's default partitioner is murmur2, as
// Kafka's Java client. Run: node shop-events.js BOOTSTRAP TOPIC EVENTS USERS
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap = "127.0.0.1:9092", topic = "shop.clicks", events = "1000", users = "50"] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: "shop", brokers: bootstrap.split(","), logLevel: logLevel.WARN });
  const producer = kafka.producer({ idempotent: true }); // acks=all with idempotence
  await producer.connect();
  const now = Date.now() / 1000;
  const messages = [];
  for (let n = 0; n < Number(events); n++) {
    const user = `node-u${n % Number(users)}`;
    const event = { event_id: `node-${n}`, type: "click", user_id: user, item_id: `i${n % 97}`, ts: now + n / 1000 };
    messages.push({ key: user, value: JSON.stringify(event) });
  }
  for (let start = 0; start < messages.length; start += 500) {
    await producer.send({ topic, acks: -1, messages: messages.slice(start, start + 500) });
  }
  await producer.disconnect();
  console.log(`sent ${events} events for ${users} users to ${topic}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
