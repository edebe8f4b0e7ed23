"""The projections as pure functions: no servers."""

from __future__ import annotations

import uuid

import pytest
from fulfilment.events import (
    OrderConfirmed,
    PaymentRequested,
    ProductActivated,
    ProductDeactivated,
    ProductPriceChanged,
    ProductRegistered,
    StockReceived,
)
from fulfilment.registry import build_registry
from projector_service.documents import OutOfOrder, evolve_document, with_names
from projector_service.summaries import summary_writes

from services.projector.tests.factories import order_history, placed, projected, stock_history


def test_an_order_document_follows_its_stream() -> None:
    order_id = uuid.uuid4()
    document = None
    for event in order_history(order_id, cancel=True):
        document = evolve_document(document, event, {"mug": "Blue mug"})
    assert document is not None
    assert document.status == "cancelled"
    assert document.reason == "changed my mind"
    assert document.version == 2
    assert document.lines[0].product_name == "Blue mug"
    assert document.total == 1000
    assert document.placed_at == "2026-01-01T00:00:00Z"
    assert document.updated_at == "2026-01-01T00:00:02Z"


def test_an_event_that_skips_a_version_is_refused_rather_than_guessed() -> None:
    order_id = uuid.uuid4()
    placed_event, confirmed, _ = order_history(order_id, cancel=True)
    with pytest.raises(OutOfOrder):
        evolve_document(None, confirmed, {})
    document = evolve_document(None, placed_event, {})
    with pytest.raises(OutOfOrder):
        evolve_document(document, placed_event, {})  # a duplicate is the caller's to skip


def test_a_line_without_a_known_name_is_filled_in_once_the_name_is_known() -> None:
    order_id = uuid.uuid4()
    document = evolve_document(
        None, projected(f"order-{order_id}", 0, placed(order_id, skus=("mug", "pot"))), {}
    )
    assert [line.product_name for line in document.lines] == [None, None]
    named = with_names(document, {"pot": "Tea pot"})
    assert [line.product_name for line in named.lines] == [None, "Tea pot"]
    assert with_names(named, {"other": "x"}) is named


def test_placing_an_order_writes_its_summary_counts_it_and_lists_it_for_the_customer() -> None:
    order_id = uuid.uuid4()
    (write,) = summary_writes(order_history(order_id, customer="ann")[0])
    assert write.kind == "order"
    assert write.ident == str(order_id)
    assert write.version == 0
    assert write.set["status"] == "pending"
    assert write.set["customer_id"] == "ann"
    assert write.count_status
    assert write.recent is not None
    assert write.recent.customer_id == "ann"


def test_status_changes_are_counted_and_guarded_by_the_stream_version() -> None:
    order_id = uuid.uuid4()
    (write,) = summary_writes(projected(f"order-{order_id}", 1, OrderConfirmed(order_id=order_id)))
    assert write.set == {"status": "confirmed", "updated_at": "2026-01-01T00:00:01Z"}
    assert write.version == 1
    assert write.count_status


def test_received_stock_grows_what_is_available_by_the_quantity() -> None:
    registered, received, reserved = stock_history("mug", uuid.uuid4())
    assert summary_writes(registered)[0].set == {
        "sku": "mug",
        "name": "Blue mug",
        "on_hand": "0",
        "available": "0",
        "active": "1",
        "unit_price": "1250",
        "currency": "EUR",
    }
    (write,) = summary_writes(received)
    assert write.set == {"on_hand": "10"}
    assert write.incr == {"available": 10}
    assert summary_writes(reserved)[0].set == {"available": "7"}


def test_events_the_read_models_do_not_show_cause_no_writes() -> None:
    order_id = uuid.uuid4()
    event = projected(f"payment-{order_id}", 0, PaymentRequested(order_id=order_id, amount=5, currency="EUR"))
    assert summary_writes(event) == []
    assert (
        summary_writes(projected("stock-x", 1, StockReceived(sku="x", quantity=1, on_hand=1)))[0].kind
        == "stock"
    )


def test_a_product_registered_before_prices_existed_is_written_without_a_price() -> None:
    # A stored version 1 payload, decoded as every reader decodes it: upcast, with no price.
    stored = b'{"type": "ProductRegistered", "sku": "old-lamp", "name": "Old lamp"}'
    upcast = build_registry().decode("ProductRegistered", 1, stored)
    assert isinstance(upcast, ProductRegistered)
    (write,) = summary_writes(projected("stock-old-lamp", 0, upcast))
    assert write.set == {
        "sku": "old-lamp",
        "name": "Old lamp",
        "on_hand": "0",
        "available": "0",
        "active": "1",
    }


def test_price_changes_deactivation_and_activation_write_the_catalogue_fields_in_stream_order() -> None:
    changes = [
        projected("stock-mug", 3, ProductPriceChanged(sku="mug", unit_price=1400, currency="USD")),
        projected("stock-mug", 4, ProductDeactivated(sku="mug", reason="discontinued")),
        projected("stock-mug", 5, ProductActivated(sku="mug")),
    ]
    writes = [write for event in changes for write in summary_writes(event)]
    assert [(w.kind, w.ident, w.version, w.set, w.incr) for w in writes] == [
        ("stock", "mug", 3, {"unit_price": "1400", "currency": "USD"}, {}),
        ("stock", "mug", 4, {"active": "0"}, {}),
        ("stock", "mug", 5, {"active": "1"}, {}),
    ]
    assert not any(w.count_status for w in writes)
