package orderflow.peers;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.StreamPartitioner;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.state.WindowStoreIterator;

/**
 * The inventory peer: `orders` -> stock decision -> `inventory-events`, with
 * inventory-service's rules (services/inventory-service/src/ledger/mod.rs):
 * <ul>
 *   <li>an order of an unknown item fails ("unknown item \"x\""); one asking for more than
 *       initial + restocked - reserved fails ("insufficient stock: requested Q, available A");
 *       otherwise it reserves its units;</li>
 *   <li>a restock of an unknown item is refused (stock 0); one that would take initial +
 *       restocked beyond MAX_STOCK is refused; otherwise it adds its units;</li>
 *   <li>an order (restock) id decided within the idempotency window (by event time, 24 h) is
 *       a duplicate: nothing is written; a redelivery is left to the processing guarantee;</li>
 *   <li>an invalid record is skipped (orderflow sends it to its DLQ).</li>
 * </ul>
 * The state is two key-value stores by item (units reserved, units restocked) and a window
 * store of decided ids, all persistent (RocksDB) with changelogs. A decision is keyed by item,
 * goes to the partition number of the order it decides, carries the order's offset in a
 * header and has the order's event time as timestamp, as orderflow's.
 */
final class InventoryPeer {
    static final String RESERVED = "reserved";
    static final String RESTOCKED = "restocked";
    static final String DECIDED_IDS = "decided-ids";

    /** Records of `orders` handled (decided, duplicate or skipped), over every task. */
    static final AtomicLong HANDLED = new AtomicLong();

    private InventoryPeer() {}

    /** A decision and the partition it goes to (the partition of its order). */
    record Routed(int partition, byte[] json) {}

    static Topology topology(Catalogue catalogue, String input, String output, Duration window) {
        Topology t = new Topology();
        t.addSource("orders", Serdes.String().deserializer(), Serdes.ByteArray().deserializer(), input);
        t.addProcessor("decide", () -> new Decide(catalogue, window), "orders");
        t.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(RESERVED), Serdes.String(), Serdes.Long()), "decide");
        t.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(RESTOCKED), Serdes.String(), Serdes.Long()), "decide");
        t.addStateStore(Stores.windowStoreBuilder(
                Stores.persistentWindowStore(DECIDED_IDS, window, Duration.ofMillis(1), false),
                Serdes.String(), Serdes.Long()), "decide");
        Serializer<Routed> json = (topic, r) -> r.json();
        StreamPartitioner<String, Routed> samePartition =
                (topic, key, r, partitions) -> Optional.of(Set.of(r.partition()));
        t.addSink("inventory-events", output, Serdes.String().serializer(), json, samePartition, "decide");
        return t;
    }

    static final class Decide implements Processor<String, byte[], String, Routed> {
        private final Catalogue catalogue;
        private final long windowMs;
        private ProcessorContext<String, Routed> ctx;
        private KeyValueStore<String, Long> reserved;
        private KeyValueStore<String, Long> restocked;
        private WindowStore<String, Long> ids;

        Decide(Catalogue catalogue, Duration window) {
            this.catalogue = catalogue;
            this.windowMs = window.toMillis();
        }

        @Override
        public void init(ProcessorContext<String, Routed> context) {
            ctx = context;
            reserved = context.getStateStore(RESERVED);
            restocked = context.getStateStore(RESTOCKED);
            ids = context.getStateStore(DECIDED_IDS);
        }

        @Override
        public void process(Record<String, byte[]> r) {
            HANDLED.incrementAndGet();
            ObjectNode in = Events.decode(r.value(), true);
            if (in == null) return; // orderflow: to the DLQ
            Instant now = Instant.now();
            boolean order = in.get("type").asText().equals("OrderPlaced");
            String id = in.get(order ? "order_id" : "restock_id").asText();
            long ts = Events.time(in.get("ts")).toEpochMilli();
            long windowStart = now.toEpochMilli() - windowMs;
            try (WindowStoreIterator<Long> seen = ids.fetch(id, windowStart, Long.MAX_VALUE)) {
                if (seen.hasNext()) return; // decided before
            }
            if (ts >= windowStart) ids.put(id, ts, ts);
            String item = in.get("item").asText();
            long qty = in.get("qty").asLong();
            byte[] decision = order ? decideOrder(in, item, qty, now) : decideRestock(in, item, qty, now);
            RecordMetadata md = ctx.recordMetadata().orElseThrow();
            RecordHeaders headers = new RecordHeaders();
            headers.add(Events.HEADER_ORDERS_OFFSET, Long.toString(md.offset()).getBytes(StandardCharsets.UTF_8));
            ctx.forward(new Record<>(item, new Routed(md.partition(), decision), ts, headers));
        }

        private byte[] decideOrder(ObjectNode in, String item, long qty, Instant now) {
            Long initial = catalogue.initial(item);
            if (initial == null) {
                return Events.decision(in, "InventoryFailed", "failed", "unknown item " + Events.debug(item), null, now);
            }
            long held = get(reserved, item);
            long available = Math.max(0, initial + get(restocked, item) - held);
            if (qty > available) {
                String reason = "insufficient stock: requested " + qty + ", available " + available;
                return Events.decision(in, "InventoryFailed", "failed", reason, null, now);
            }
            reserved.put(item, held + qty);
            return Events.decision(in, "InventoryReserved", "reserved", null, null, now);
        }

        private byte[] decideRestock(ObjectNode in, String item, long qty, Instant now) {
            Long initial = catalogue.initial(item);
            if (initial == null) {
                String reason = "unknown item " + Events.debug(item);
                return Events.decision(in, "InventoryRestockRefused", "refused", reason, 0L, now);
            }
            long added = get(restocked, item);
            long after = initial + added + qty;
            if (after > Catalogue.MAX_STOCK) {
                String reason = "stock beyond the maximum: " + initial + " initial + " + added + " restocked + "
                        + qty + " requested exceeds " + Catalogue.MAX_STOCK;
                return Events.decision(in, "InventoryRestockRefused", "refused", reason, initial + added, now);
            }
            restocked.put(item, added + qty);
            return Events.decision(in, "InventoryRestocked", "restocked", null, after, now);
        }

        private static long get(KeyValueStore<String, Long> store, String item) {
            Long v = store.get(item);
            return v == null ? 0 : v;
        }
    }
}
