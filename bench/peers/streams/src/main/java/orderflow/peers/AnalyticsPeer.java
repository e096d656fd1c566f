package orderflow.peers;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The analytics peer: `orders` and `inventory-events` -> counts per event-time minute
 * (orders, reserved, failed), as analytics-service's state.rs: an OrderPlaced counts an order
 * in the minute of its `ts`, an InventoryReserved / InventoryFailed a decision in the minute
 * of its order's `ts`; restocks and invalid records are not orders. The counts live in a
 * persistent key-value store by minute (with its changelog), one shard per task (the two
 * topics' partitions of the same number); {@link #metrics} sums the shards through an
 * interactive query into the document of analytics' `GET /api/metrics` (its counting part).
 */
final class AnalyticsPeer {
    static final String MINUTES = "minutes";

    /** Records read from both topics (counted or not), over every task. */
    static final AtomicLong HANDLED = new AtomicLong();

    private AnalyticsPeer() {}

    static Topology topology(String orders, String decisions) {
        Topology t = new Topology();
        t.addSource("orders", Serdes.String().deserializer(), Serdes.ByteArray().deserializer(), orders);
        t.addSource("decisions", Serdes.String().deserializer(), Serdes.ByteArray().deserializer(), decisions);
        t.addProcessor("count-orders", () -> new Count(true), "orders");
        t.addProcessor("count-decisions", () -> new Count(false), "decisions");
        t.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(MINUTES), Serdes.String(), COUNTS), "count-orders", "count-decisions");
        return t;
    }

    /** Index of each count in a minute's value. */
    static final int ORDERS = 0, RESERVED = 1, FAILED = 2;

    /** A minute's counts: three longs. */
    static final Serde<long[]> COUNTS = Serdes.serdeFrom(
            (topic, c) -> ByteBuffer.allocate(24).putLong(c[0]).putLong(c[1]).putLong(c[2]).array(),
            (topic, b) -> {
                ByteBuffer buf = ByteBuffer.wrap(b);
                return new long[] {buf.getLong(), buf.getLong(), buf.getLong()};
            });

    static final class Count implements Processor<String, byte[], Void, Void> {
        private final boolean ordersTopic;
        private KeyValueStore<String, long[]> minutes;

        Count(boolean ordersTopic) {
            this.ordersTopic = ordersTopic;
        }

        @Override
        public void init(ProcessorContext<Void, Void> context) {
            minutes = context.getStateStore(MINUTES);
        }

        @Override
        public void process(Record<String, byte[]> r) {
            ObjectNode e = Events.decode(r.value(), ordersTopic);
            if (e != null) {
                int which = switch (e.get("type").asText()) {
                    case "OrderPlaced" -> ORDERS;
                    case "InventoryReserved" -> RESERVED;
                    case "InventoryFailed" -> FAILED;
                    default -> -1; // restocks: not orders
                };
                if (which >= 0) {
                    String minute = Events.minute(Events.time(e.get("ts")));
                    long[] c = minutes.get(minute);
                    if (c == null) c = new long[3];
                    c[which]++;
                    minutes.put(minute, c);
                }
            }
            HANDLED.incrementAndGet();
        }
    }

    /** orders_total, reserved_total, failed_total, failure_rate and orders_per_minute. */
    static ObjectNode metrics(KafkaStreams streams) {
        ReadOnlyKeyValueStore<String, long[]> store = streams.store(
                StoreQueryParameters.fromNameAndType(MINUTES, QueryableStoreTypes.keyValueStore()));
        java.util.TreeMap<String, long[]> byMinute = new java.util.TreeMap<>();
        try (KeyValueIterator<String, long[]> it = store.all()) {
            while (it.hasNext()) {
                KeyValue<String, long[]> kv = it.next();
                long[] sum = byMinute.computeIfAbsent(kv.key, k -> new long[3]);
                for (int i = 0; i < 3; i++) sum[i] += kv.value[i];
            }
        }
        long orders = 0, reserved = 0, failed = 0;
        ArrayNode perMinute = Events.JSON.createArrayNode();
        for (var m : byMinute.entrySet()) {
            long[] c = m.getValue();
            orders += c[ORDERS];
            reserved += c[RESERVED];
            failed += c[FAILED];
            ObjectNode row = perMinute.addObject();
            row.put("minute", m.getKey());
            row.put("orders", c[ORDERS]);
            row.put("failed", c[FAILED]);
            row.put("reserved", c[RESERVED]);
        }
        ObjectNode doc = Events.JSON.createObjectNode();
        doc.put("orders_total", orders);
        doc.put("reserved_total", reserved);
        doc.put("failed_total", failed);
        doc.put("failure_rate", reserved + failed == 0 ? 0.0 : (double) failed / (reserved + failed));
        doc.set("orders_per_minute", perMinute);
        return doc;
    }
}
