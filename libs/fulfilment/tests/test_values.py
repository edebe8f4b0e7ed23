"""Stream ids: built from a category and an id, and read back."""

from __future__ import annotations

from uuid import uuid4

import pytest
from eventstore import category_of
from fulfilment import (
    ORDER_CATEGORY,
    PAYMENT_CATEGORY,
    STOCK_CATEGORY,
    order_id_of,
    order_stream,
    payment_order_id_of,
    payment_stream,
    sku_of,
    stock_stream,
)


def test_each_stream_id_reads_back_as_its_id_and_category() -> None:
    order_id = uuid4()

    assert order_id_of(order_stream(order_id)) == order_id
    assert payment_order_id_of(payment_stream(order_id)) == order_id
    assert sku_of(stock_stream("SKU-1")) == "sku-1"
    assert category_of(order_stream(order_id)) == ORDER_CATEGORY
    assert category_of(payment_stream(order_id)) == PAYMENT_CATEGORY
    assert category_of(stock_stream("SKU-1")) == STOCK_CATEGORY


def test_a_stream_id_of_another_category_is_refused() -> None:
    order_id = uuid4()

    with pytest.raises(ValueError, match="category 'order'"):
        order_id_of(payment_stream(order_id))
    with pytest.raises(ValueError, match="category 'payment'"):
        payment_order_id_of(order_stream(order_id))
    with pytest.raises(ValueError, match="hexadecimal UUID"):
        order_id_of("order-not-a-uuid")
