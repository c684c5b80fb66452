// A shop backend sending click events to streamrec with Apache Kafka's own Java client.
// Each event is JSON keyed by its user id; the client's default partitioner (murmur2) puts a
// user's events in the partition streamrec expects. Run (see pom.xml for the classpath):
//   java -cp "$(cat cp.txt)" ShopEvents.java BOOTSTRAP TOPIC EVENTS USERS
import java.util.Locale;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class ShopEvents {
    public static void main(String[] args) throws Exception {
        String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:9092";
        String topic = args.length > 1 ? args[1] : "shop.clicks";
        int events = args.length > 2 ? Integer.parseInt(args[2]) : 1000;
        int users = args.length > 3 ? Integer.parseInt(args[3]) : 50;

        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.ACKS_CONFIG, "all"); // a click is acknowledged once replicated
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        double now = System.currentTimeMillis() / 1000.0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config)) {
            for (int n = 0; n < events; n++) {
                String user = "java-u" + (n % users);
                String event = String.format(Locale.ROOT,
                        "{\"event_id\":\"java-%d\",\"type\":\"click\",\"user_id\":\"%s\",\"item_id\":\"i%d\",\"ts\":%.3f}",
                        n, user, n % 97, now + n / 1000.0);
                producer.send(new ProducerRecord<>(topic, user, event)); // keyed by user
            }
            producer.flush();
        }
        System.out.println("sent " + events + " events for " + users + " users to " + topic);
    }
}
