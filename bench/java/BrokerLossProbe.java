import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.SubscriptionType;

/**
 * The official Java client beside bench/cluster-unload.ts during a broker
 * kill, for comparison: one producer and one Shared consumer on a
 * partitioned topic, every client setting at its default, at most `window`
 * messages sent and not yet received. Runs until the stop file appears,
 * then prints one JSON line: messages sent, received (more than sent when
 * sends that timed out were stored after all, or the broker redelivered),
 * sends that failed before the stop (by exception class), and the longest
 * time without a message received.
 *
 *   java -cp out:$PULSAR_HOME/lib/* BrokerLossProbe serviceUrl topic window stopFile
 */
public final class BrokerLossProbe {
  public static void main(String[] args) throws Exception {
    String serviceUrl = args[0];
    String topic = args[1];
    int window = Integer.parseInt(args[2]);
    Path stopFile = Path.of(args[3]);
    Semaphore room = new Semaphore(window);
    AtomicLong sent = new AtomicLong();
    AtomicLong received = new AtomicLong();
    AtomicLong lastReceivedAt = new AtomicLong();
    AtomicLong longestGapMs = new AtomicLong();
    Map<String, Long> failures = new ConcurrentHashMap<>();
    // Sends still in flight when the probe closes fail with AlreadyClosedException: not the broker's doing.
    AtomicBoolean stopping = new AtomicBoolean();
    try (PulsarClient client = PulsarClient.builder().serviceUrl(serviceUrl).build();
        Consumer<byte[]> consumer =
            client.newConsumer().topic(topic).subscriptionName("probe").subscriptionType(SubscriptionType.Shared).subscribe();
        Producer<byte[]> producer = client.newProducer(Schema.BYTES).topic(topic).blockIfQueueFull(true).create()) {
      Thread receiving =
          new Thread(
              () -> {
                while (!Thread.currentThread().isInterrupted()) {
                  try {
                    Message<byte[]> message = consumer.receive(200, TimeUnit.MILLISECONDS);
                    if (message == null) continue;
                    consumer.acknowledgeAsync(message);
                    long now = System.currentTimeMillis();
                    long previous = lastReceivedAt.getAndSet(now);
                    if (previous != 0) longestGapMs.accumulateAndGet(now - previous, Math::max);
                    received.incrementAndGet();
                    room.release();
                  } catch (Exception e) {
                    if (Thread.currentThread().isInterrupted()) return;
                  }
                }
              });
      receiving.start();
      System.out.println("READY");
      long i = 0;
      while (!Files.exists(stopFile)) {
        if (!room.tryAcquire(200, TimeUnit.MILLISECONDS)) continue;
        producer
            .sendAsync(Long.toString(i++).getBytes())
            .whenComplete(
                (id, error) -> {
                  if (error == null) {
                    sent.incrementAndGet();
                    return;
                  }
                  Throwable cause = error.getCause() != null ? error.getCause() : error;
                  if (!stopping.get()) failures.merge(cause.getClass().getSimpleName(), 1L, Long::sum);
                  room.release();
                });
      }
      // Let what is in flight arrive before closing, so closing fails no send.
      stopping.set(true);
      long drainUntil = System.currentTimeMillis() + 60_000;
      while (room.availablePermits() < window && System.currentTimeMillis() < drainUntil) Thread.sleep(50);
      receiving.interrupt();
      receiving.join(5000);
    }
    StringBuilder failed = new StringBuilder("{");
    for (Map.Entry<String, Long> e : new TreeMap<>(failures).entrySet())
      failed.append(failed.length() > 1 ? "," : "").append('"').append(e.getKey()).append("\":").append(e.getValue());
    failed.append('}');
    System.out.printf(
        "{\"sent\":%d,\"received\":%d,\"failedSends\":%s,\"longestStallSeconds\":%.1f}%n",
        sent.get(), received.get(), failed, longestGapMs.get() / 1000.0);
  }
}
