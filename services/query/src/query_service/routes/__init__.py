"""The HTTP endpoints: orders, customers' recent orders, stock, plus health."""
