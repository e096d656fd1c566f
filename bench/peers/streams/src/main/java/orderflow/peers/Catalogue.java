package orderflow.peers;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The initial stock per item: orderflow's menu at 2000 units each (services/events:
 * DEFAULT_ITEMS, DEFAULT_STOCK_PER_ITEM), with an `INITIAL_STOCK`-style spec
 * ("burger=5,tofu=3") overriding or adding items, as inventory-service's ledger/stock.rs.
 */
final class Catalogue {
    static final List<String> DEFAULT_ITEMS =
            List.of("burger", "pizza", "salad", "sushi", "taco", "ramen", "curry", "wrap");
    static final long DEFAULT_STOCK_PER_ITEM = 2000;
    /** The most units of one item (restock.rs MAX_STOCK). */
    static final long MAX_STOCK = 1_000_000_000L;

    private final Map<String, Long> initial = new LinkedHashMap<>();

    Catalogue(String spec) {
        for (String item : DEFAULT_ITEMS) initial.put(item, DEFAULT_STOCK_PER_ITEM);
        if (spec == null) return;
        for (String entry : spec.split(",")) {
            entry = entry.trim();
            if (entry.isEmpty()) continue;
            int eq = entry.indexOf('=');
            String item = eq < 0 ? "" : entry.substring(0, eq).trim();
            if (item.isEmpty() || item.equals("#checkpoint")) {
                throw new IllegalArgumentException("--initial-stock: entry " + entry + " is not item=quantity");
            }
            long qty;
            try {
                qty = Long.parseLong(entry.substring(eq + 1).trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--initial-stock: quantity of " + item + " is not a whole number");
            }
            if (qty < 0 || qty > MAX_STOCK) {
                throw new IllegalArgumentException("--initial-stock: " + item + "=" + qty + " is beyond 0.." + MAX_STOCK);
            }
            initial.put(item, qty);
        }
    }

    /** The initial stock of `item`, or null for an item not on the menu. */
    Long initial(String item) {
        return initial.get(item);
    }
}
