"""Model instances from hand-written SQL: the few statements on hot paths (the widget's posting path) are written by
hand, and their rows become model instances exactly as a queryset would load them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)


def instance_from_row(model: type[M], columns: Mapping[str, Any], *, from_database: bool = True) -> M | None:
    """An instance of ``model`` loaded from ``columns`` (field attname → value, any order; the fields not given are
    deferred, as with ``.only()``). With ``from_database`` the values are raw column values and each field's database
    converters run (JSON text → Python); otherwise they are Python values already. ``None`` when the primary key is
    NULL (a LEFT JOIN that found no row). Raises ``FieldDoesNotExist`` for an unknown name."""
    pk_name = model._meta.pk.attname
    if columns.get(pk_name) is None:
        return None
    values = []
    for field in model._meta.concrete_fields:  # Model.from_db takes the values in the model's field order
        if field.attname not in columns:
            continue
        value = columns[field.attname]
        if from_database:
            for converter in field.get_db_converters(connection):
                value = converter(value, field, connection)
        values.append((field.attname, value))
    unknown = set(columns) - {name for name, _ in values}
    if unknown:
        from django.core.exceptions import FieldDoesNotExist

        raise FieldDoesNotExist(f"{model.__name__} has no field(s) {', '.join(sorted(unknown))}")
    return model.from_db(connection.alias, [n for n, _ in values], [v for _, v in values])
