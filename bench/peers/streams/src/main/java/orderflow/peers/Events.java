package orderflow.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.UUID;

/**
 * orderflow's event contract (services/events: model.rs, restock.rs, codec.rs), as far as the
 * peers need it: which records are valid (the same rules as codec.rs's decode, so a record
 * orderflow sends to its DLQ is skipped here), and the decision documents, field for field in
 * the order orderflow writes them.
 */
final class Events {
    static final ObjectMapper JSON = new ObjectMapper();
    static final int SCHEMA_VERSION = 1;
    static final String HEADER_ORDERS_OFFSET = "orderflow.orders.offset";

    private static final DateTimeFormatter MILLIS =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);
    private static final DateTimeFormatter SECONDS =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss'Z'").withZone(ZoneOffset.UTC);

    /** The fields of each type besides `type` (deny_unknown_fields); `reason` is optional. */
    private static final Map<String, Set<String>> FIELDS = Map.of(
            "OrderPlaced", Set.of("schema_version", "event_id", "order_id", "item", "qty", "user_id", "ts"),
            "StockRestockRequested", Set.of("schema_version", "event_id", "restock_id", "item", "qty", "ts"),
            "InventoryReserved", decisionFields(),
            "InventoryFailed", decisionFields(),
            "InventoryRestocked", Set.of("schema_version", "event_id", "restock_id", "item", "qty", "ts",
                    "status", "stock", "decided_at"),
            "InventoryRestockRefused", Set.of("schema_version", "event_id", "restock_id", "item", "qty", "ts",
                    "status", "stock", "decided_at"));

    private static Set<String> decisionFields() {
        return Set.of("schema_version", "event_id", "order_id", "item", "qty", "user_id", "ts", "status",
                "decided_at");
    }

    private Events() {}

    /** A valid event read from `topic` kind ("orders" or "inventory-events"), or null. */
    static ObjectNode decode(byte[] bytes, boolean ordersTopic) {
        if (bytes == null) return null;
        JsonNode v;
        try {
            v = JSON.readTree(bytes);
        } catch (java.io.IOException e) {
            return null;
        }
        if (!(v instanceof ObjectNode o) || !o.path("type").isTextual()) return null;
        String type = o.get("type").asText();
        boolean onOrders = type.equals("OrderPlaced") || type.equals("StockRestockRequested");
        Set<String> fields = FIELDS.get(type);
        if (fields == null || onOrders != ordersTopic) return null;
        for (String f : fields) if (!o.has(f) || o.get(f).isNull()) return null;
        for (Iterator<String> it = o.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!f.equals("type") && !fields.contains(f) && !f.equals("reason")) return null;
        }
        if (o.has("reason") && !o.get("reason").isNull() && !o.get("reason").isTextual()) return null;
        boolean valid = o.get("schema_version").isIntegralNumber()
                && o.get("schema_version").asLong() == SCHEMA_VERSION
                && isUuid(o.get("event_id"))
                && isUuid(o.has("order_id") ? o.get("order_id") : o.get("restock_id"))
                && o.get("item").isTextual() && !o.get("item").asText().isBlank()
                && isU32(o.get("qty")) && o.get("qty").asLong() >= 1
                && (!fields.contains("user_id") || (o.get("user_id").isTextual() && !o.get("user_id").asText().isBlank()))
                && time(o.get("ts")) != null
                && (!fields.contains("decided_at") || time(o.get("decided_at")) != null)
                && statusFits(type, o);
        return valid ? o : null;
    }

    private static boolean statusFits(String type, ObjectNode o) {
        String status = o.path("status").asText("");
        String reason = o.path("reason").isTextual() ? o.get("reason").asText() : null;
        boolean hasReason = reason != null && !reason.isBlank();
        return switch (type) {
            case "InventoryReserved" -> status.equals("reserved");
            case "InventoryFailed" -> status.equals("failed") && hasReason;
            case "InventoryRestocked" -> status.equals("restocked") && reason == null && o.get("stock").isIntegralNumber()
                    && o.get("stock").asLong() <= Catalogue.MAX_STOCK && o.get("stock").asLong() >= o.get("qty").asLong();
            case "InventoryRestockRefused" -> status.equals("refused") && hasReason && o.get("stock").isIntegralNumber()
                    && o.get("stock").asLong() >= 0;
            default -> !o.has("status") && !o.has("reason");
        };
    }

    private static boolean isUuid(JsonNode n) {
        if (n == null || !n.isTextual()) return false;
        try {
            UUID.fromString(n.asText());
            return n.asText().length() == 36;
        } catch (IllegalArgumentException e) {
            return false;
        }
    }

    private static boolean isU32(JsonNode n) {
        return n.isIntegralNumber() && n.canConvertToLong() && n.asLong() >= 0 && n.asLong() <= 0xFFFF_FFFFL;
    }

    /** An RFC 3339 time, or null. */
    static Instant time(JsonNode n) {
        if (n == null || !n.isTextual()) return null;
        try {
            return OffsetDateTime.parse(n.asText()).toInstant();
        } catch (DateTimeParseException e) {
            return null;
        }
    }

    /** RFC 3339 with milliseconds and `Z`, as orderflow writes times. */
    static String millis(Instant t) {
        return MILLIS.format(t.truncatedTo(ChronoUnit.MILLIS));
    }

    /** The start of the minute `t` falls in, as analytics names it ("2026-11-22T10:00:00Z"). */
    static String minute(Instant t) {
        return SECONDS.format(t.truncatedTo(ChronoUnit.MINUTES));
    }

    /**
     * The decision about order (or restock request) `in`: the request's fields, then status,
     * reason (failures only), stock (restocks only) and decided_at, as serde writes them.
     */
    static byte[] decision(ObjectNode in, String type, String status, String reason, Long stock, Instant now) {
        boolean restock = in.has("restock_id");
        ObjectNode out = JSON.createObjectNode();
        out.put("type", type);
        out.put("schema_version", SCHEMA_VERSION);
        out.put("event_id", UUID.randomUUID().toString());
        if (restock) {
            out.set("restock_id", in.get("restock_id"));
        } else {
            out.set("order_id", in.get("order_id"));
        }
        out.set("item", in.get("item"));
        out.put("qty", in.get("qty").asLong());
        if (!restock) out.set("user_id", in.get("user_id"));
        out.put("ts", millis(time(in.get("ts"))));
        out.put("status", status);
        if (reason != null) out.put("reason", reason);
        if (stock != null) out.put("stock", stock.longValue());
        out.put("decided_at", millis(now));
        try {
            return JSON.writeValueAsBytes(out);
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException("a JSON tree always serializes", e);
        }
    }

    /** Rust's `{:?}` of a string: quoted, with `\`, `"` and control characters escaped. */
    static String debug(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '\0' -> b.append("\\0");
                default -> {
                    if (c < 0x20 || c == 0x7f) b.append(String.format("\\u{%x}", (int) c));
                    else b.append(c);
                }
            }
        }
        return b.append('"').toString();
    }
}
