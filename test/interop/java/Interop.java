// The official Java client, driven by Sheaf's interop tests (test/interop/).
// Built with javac against the jars of the Pulsar distribution that
// scripts/pulsar.sh fetches; run as `java Interop <command> key=value...`.
//
//   produce  url= topic= count= [size=] [batching=] [compression=] [chunking=] [chunkMaxMessageSize=]
//            [keys=] [orderingKeys=] [eventTime=] [hashing=] [from=]
//   consume  url= topic= subscription= [count=] [idleMs=] [type=] [batchIndexAck=] [ack=all|even|none]
//   drain    url= topic= subscription= count= [maxNumMessages=100] [timeoutMs=100]
//            batchReceive until `count` messages, one acknowledge() per batch; prints
//            {"count":…,"seconds":…} timed from the first message to the last ack
//
// Every message is one JSON line on stdout; `consume` prints READY once it is
// subscribed and DONE at the end. Payloads are deterministic (see payload()),
// so both sides can check them by hash.
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.BatchReceivePolicy;
import org.apache.pulsar.client.api.BatcherBuilder;
import org.apache.pulsar.client.api.Messages;
import org.apache.pulsar.client.api.CompressionType;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.ConsumerBuilder;
import org.apache.pulsar.client.api.HashingScheme;
import org.apache.pulsar.client.api.KeySharedPolicy;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.MessageId;
import org.apache.pulsar.client.api.MessageRoutingMode;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.ProducerBuilder;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;
import org.apache.pulsar.client.api.SubscriptionType;
import org.apache.pulsar.client.api.TypedMessageBuilder;

public final class Interop {
  private Interop() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> o = new HashMap<>();
    for (int i = 1; i < args.length; i++) {
      String[] kv = args[i].split("=", 2);
      o.put(kv[0], kv.length > 1 ? kv[1] : "");
    }
    try (PulsarClient client = PulsarClient.builder().serviceUrl(o.get("url")).build()) {
      switch (args[0]) {
        case "produce" -> produce(client, o);
        case "consume" -> consume(client, o);
        case "drain" -> drain(client, o);
        default -> throw new IllegalArgumentException("unknown command " + args[0]);
      }
    }
    System.out.flush();
    System.exit(0);
  }

  /** The same bytes Sheaf's tests build: "m<i>;" repeated to `size` bytes. */
  static byte[] payload(int i, int size) {
    byte[] unit = ("m" + i + ";").getBytes(StandardCharsets.UTF_8);
    byte[] out = new byte[size];
    for (int k = 0; k < size; k++) out[k] = unit[k % unit.length];
    return out;
  }

  static String sha(byte[] bytes) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
  }

  static String str(String s) {
    if (s == null) return "null";
    return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }

  static boolean flag(Map<String, String> o, String key) {
    return Boolean.parseBoolean(o.getOrDefault(key, "false"));
  }

  static void produce(PulsarClient client, Map<String, String> o) throws Exception {
    int count = Integer.parseInt(o.getOrDefault("count", "10"));
    int size = Integer.parseInt(o.getOrDefault("size", "64"));
    int keys = Integer.parseInt(o.getOrDefault("keys", "0"));
    boolean batching = flag(o, "batching");
    ProducerBuilder<byte[]> b = client.newProducer()
        .topic(o.get("topic"))
        .enableBatching(batching)
        .blockIfQueueFull(true)
        .compressionType(CompressionType.valueOf(o.getOrDefault("compression", "NONE")))
        .hashingScheme(HashingScheme.valueOf(o.getOrDefault("hashing", "JavaStringHash")))
        .messageRoutingMode(MessageRoutingMode.RoundRobinPartition);
    if (batching) {
      b.batchingMaxMessages(Integer.parseInt(o.getOrDefault("batchingMaxMessages", "100")))
          .batchingMaxPublishDelay(50, TimeUnit.MILLISECONDS);
      if (flag(o, "keyBased")) b.batcherBuilder(BatcherBuilder.KEY_BASED);
    }
    if (flag(o, "chunking")) {
      b.enableChunking(true);
      if (o.containsKey("chunkMaxMessageSize")) b.chunkMaxMessageSize(Integer.parseInt(o.get("chunkMaxMessageSize")));
    }
    try (Producer<byte[]> producer = b.create()) {
      List<CompletableFuture<MessageId>> sent = new ArrayList<>();
      List<String> lines = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        byte[] value = payload(i, size);
        TypedMessageBuilder<byte[]> m = producer.newMessage().value(value).property("i", Integer.toString(i));
        if (o.containsKey("from")) m.property("from", o.get("from"));
        String key = keys > 0 ? "key-" + (i % keys) : null;
        if (key != null) m.key(key);
        String orderingKey = key != null && flag(o, "orderingKeys") ? "ok-" + (i % keys) : null;
        if (orderingKey != null) m.orderingKey(orderingKey.getBytes(StandardCharsets.UTF_8));
        long eventTime = flag(o, "eventTime") ? 1_700_000_000_000L + i : 0;
        if (eventTime > 0) m.eventTime(eventTime);
        sent.add(m.sendAsync());
        lines.add("{\"i\":" + i + ",\"key\":" + str(key) + ",\"orderingKey\":" + str(orderingKey) + ",\"eventTime\":" + eventTime
            + ",\"sha\":\"" + sha(value) + "\"");
      }
      producer.flush();
      for (int i = 0; i < count; i++) {
        MessageId id = sent.get(i).get(60, TimeUnit.SECONDS);
        System.out.println(lines.get(i) + ",\"id\":" + str(id.toString()) + "}");
      }
    }
    System.out.println("DONE");
  }

  static void consume(PulsarClient client, Map<String, String> o) throws Exception {
    int count = Integer.parseInt(o.getOrDefault("count", "-1"));
    int idleMs = Integer.parseInt(o.getOrDefault("idleMs", "10000"));
    String ack = o.getOrDefault("ack", "all");
    SubscriptionType type = SubscriptionType.valueOf(o.getOrDefault("type", "Shared"));
    ConsumerBuilder<byte[]> b = client.newConsumer()
        .topic(o.get("topic"))
        .subscriptionName(o.get("subscription"))
        .subscriptionType(type)
        .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
        .enableBatchIndexAcknowledgment(flag(o, "batchIndexAck"))
        .acknowledgmentGroupTime(0, TimeUnit.MILLISECONDS);
    if (type == SubscriptionType.Key_Shared) b.keySharedPolicy(KeySharedPolicy.autoSplitHashRange());
    try (Consumer<byte[]> consumer = b.subscribe()) {
      System.out.println("READY");
      System.out.flush();
      int got = 0;
      while (count < 0 || got < count) {
        Message<byte[]> m = consumer.receive(idleMs, TimeUnit.MILLISECONDS);
        if (m == null) break;
        StringBuilder props = new StringBuilder("{");
        for (Map.Entry<String, String> e : m.getProperties().entrySet()) {
          if (props.length() > 1) props.append(',');
          props.append(str(e.getKey())).append(':').append(str(e.getValue()));
        }
        props.append('}');
        String orderingKey = m.hasOrderingKey() ? new String(m.getOrderingKey(), StandardCharsets.UTF_8) : null;
        System.out.println("{\"id\":" + str(m.getMessageId().toString()) + ",\"topic\":" + str(m.getTopicName())
            + ",\"key\":" + str(m.hasKey() ? m.getKey() : null) + ",\"orderingKey\":" + str(orderingKey)
            + ",\"eventTime\":" + m.getEventTime() + ",\"redelivery\":" + m.getRedeliveryCount()
            + ",\"receivedAt\":" + System.currentTimeMillis() + ",\"size\":" + m.getData().length
            + ",\"sha\":\"" + sha(m.getData()) + "\",\"properties\":" + props + "}");
        System.out.flush();
        int index = Integer.parseInt(m.getProperties().getOrDefault("i", "0"));
        if (ack.equals("all") || (ack.equals("even") && index % 2 == 0)) consumer.acknowledge(m);
        got++;
      }
      System.out.println("DONE " + got);
    }
  }

  /** What a Pulsar user writes instead of Sheaf: batchReceive, one ack call per batch (bench/). */
  static void drain(PulsarClient client, Map<String, String> o) throws Exception {
    int count = Integer.parseInt(o.get("count"));
    BatchReceivePolicy policy = BatchReceivePolicy.builder()
        .maxNumMessages(Integer.parseInt(o.getOrDefault("maxNumMessages", "100")))
        .timeout(Integer.parseInt(o.getOrDefault("timeoutMs", "100")), TimeUnit.MILLISECONDS)
        .build();
    try (Consumer<byte[]> consumer = client.newConsumer()
        .topic(o.get("topic"))
        .subscriptionName(o.get("subscription"))
        .subscriptionType(SubscriptionType.Shared)
        .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
        .batchReceivePolicy(policy)
        .receiverQueueSize(1000)
        .subscribe()) {
      System.out.println("READY");
      System.out.flush();
      int got = 0;
      long started = 0;
      while (got < count) {
        Messages<byte[]> batch = consumer.batchReceive();
        if (batch.size() == 0) continue;
        if (started == 0) started = System.nanoTime();
        got += batch.size();
        consumer.acknowledge(batch);
      }
      double seconds = (System.nanoTime() - started) / 1e9;
      System.out.println("{\"count\":" + got + ",\"seconds\":" + seconds + "}");
      System.out.println("DONE " + got);
    }
  }
}
