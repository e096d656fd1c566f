package orderflow.peers;

import java.io.File;
import java.nio.file.Files;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;

/**
 * The Kafka Streams peers of `make bench` (README.md next to pom.xml):
 * <pre>
 *   java -jar orderflow-streams-peers.jar inventory --bootstrap HOST:PORT --application-id ID
 *       [--input orders] [--output inventory-events] [--initial-stock burger=5,...]
 *       [--idempotency-window-ms 86400000] [common options]
 *   java -jar orderflow-streams-peers.jar analytics --bootstrap HOST:PORT --application-id ID
 *       [--orders orders] [--decisions inventory-events] [common options]
 *   common: [--exactly-once] [--state-dir DIR] [--threads 1] [--expect N] [--timeout-s 600]
 * </pre>
 * Without --expect a peer runs until SIGTERM. With --expect N it stops once it has handled N
 * input records (closing commits them) and prints one JSON line on stdout: the inventory peer
 * {"handled": N, "seconds": S}, the analytics peer the metrics document with "records" and
 * "seconds". Exit 1 when the app fails or --timeout-s passes first; 2 on bad arguments.
 */
public final class Main {
    private Main() {}

    public static void main(String[] argv) throws Exception {
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        Map<String, String> a;
        try {
            a = parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("streams peer: " + e.getMessage() + " (see Main.java's usage)");
            System.exit(2);
            return;
        }
        System.exit(run(a));
    }

    private static Map<String, String> parse(String[] argv) {
        if (argv.length == 0 || !(argv[0].equals("inventory") || argv[0].equals("analytics"))) {
            throw new IllegalArgumentException("the first argument is the peer: inventory or analytics");
        }
        Map<String, String> a = new HashMap<>();
        a.put("mode", argv[0]);
        for (int i = 1; i < argv.length; i++) {
            String k = argv[i];
            if (!k.startsWith("--")) throw new IllegalArgumentException("unexpected argument " + k);
            if (k.equals("--exactly-once")) {
                a.put("exactly-once", "true");
            } else if (i + 1 < argv.length) {
                a.put(k.substring(2), argv[++i]);
            } else {
                throw new IllegalArgumentException(k + " needs a value");
            }
        }
        for (String need : new String[] {"bootstrap", "application-id"}) {
            if (!a.containsKey(need)) throw new IllegalArgumentException("--" + need + " is required");
        }
        return a;
    }

    private static int run(Map<String, String> a) throws Exception {
        boolean inventory = a.get("mode").equals("inventory");
        Topology topology;
        AtomicLong handled;
        if (inventory) {
            Catalogue catalogue = new Catalogue(a.get("initial-stock"));
            Duration window = Duration.ofMillis(Long.parseLong(a.getOrDefault("idempotency-window-ms", "86400000")));
            topology = InventoryPeer.topology(catalogue, a.getOrDefault("input", "orders"),
                    a.getOrDefault("output", "inventory-events"), window);
            handled = InventoryPeer.HANDLED;
        } else {
            topology = AnalyticsPeer.topology(a.getOrDefault("orders", "orders"),
                    a.getOrDefault("decisions", "inventory-events"));
            handled = AnalyticsPeer.HANDLED;
        }
        boolean eos = a.containsKey("exactly-once");
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, a.get("application-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, eos ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, a.getOrDefault("threads", "1"));
        String stateDir = a.get("state-dir");
        if (stateDir == null) stateDir = Files.createTempDirectory("orderflow-streams-peer").toString();
        p.put(StreamsConfig.STATE_DIR_CONFIG, new File(stateDir).getAbsolutePath());
        // orderflow's producers compress with lz4 (runtime::kafka)
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");

        KafkaStreams streams = new KafkaStreams(topology, p);
        CountDownLatch ended = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.err.println("streams peer: " + before + " -> " + now);
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) ended.countDown();
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("streams peer: failed: " + e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Thread closer = new Thread(() -> streams.close(Duration.ofSeconds(30)));
        Runtime.getRuntime().addShutdownHook(closer);
        long started = System.nanoTime();
        System.err.println("streams peer: " + a.get("mode") + " " + (eos ? "exactly_once_v2" : "at_least_once"));
        streams.start();

        long expect = Long.parseLong(a.getOrDefault("expect", "0"));
        if (expect <= 0) {
            ended.await();
            return streams.state() == KafkaStreams.State.ERROR ? 1 : 0;
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(a.getOrDefault("timeout-s", "600")));
        while (handled.get() < expect) {
            if (ended.await(5, TimeUnit.MILLISECONDS)) {
                System.err.println("streams peer: stopped after " + handled.get() + " of " + expect + " records");
                return 1;
            }
            if (System.nanoTime() > deadline) {
                System.err.println("streams peer: timed out after " + handled.get() + " of " + expect + " records");
                return 1;
            }
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        String out;
        if (inventory) {
            streams.close(Duration.ofSeconds(30)); // commits what was decided
            out = "{\"handled\": " + handled.get() + ", \"seconds\": " + seconds + "}";
        } else {
            var doc = metricsUntil(streams, deadline);
            if (doc == null) return 1;
            doc.put("records", handled.get());
            doc.put("seconds", seconds);
            out = Events.JSON.writeValueAsString(doc);
            streams.close(Duration.ofSeconds(30));
        }
        Runtime.getRuntime().removeShutdownHook(closer);
        System.out.println(out);
        System.out.flush();
        return streams.state() == KafkaStreams.State.ERROR ? 1 : 0;
    }

    /** The analytics document, retried while the stores move (a rebalance), until the deadline. */
    private static com.fasterxml.jackson.databind.node.ObjectNode metricsUntil(KafkaStreams streams, long deadline)
            throws InterruptedException {
        while (true) {
            try {
                return AnalyticsPeer.metrics(streams);
            } catch (InvalidStateStoreException e) {
                if (System.nanoTime() > deadline) {
                    System.err.println("streams peer: the counts stayed unreadable: " + e);
                    return null;
                }
                Thread.sleep(10);
            }
        }
    }
}
