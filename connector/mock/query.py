"""REST ``query``/``queryAll`` for the mock org: runs the SOQL, pages the result and keeps
the query locators that ``nextRecordsUrl`` pages are served from; answers ``columns=true``
with the query's ``columnMetadata``; serves the Tooling API's ``tooling/query`` alike."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .http import MockRequest, MockResponse, json_response, sf_error
from .sobjects import KEY_PREFIXES
from .soql import (
    NUMBER_TYPES,
    STRING_TYPES,
    FieldDef,
    QueryResult,
    Relation,
    SoqlError,
    Table,
    execute,
    parse,
)

__all__ = [
    "MAX_OPEN_LOCATORS",
    "Locator",
    "FirstPage",
    "NextPage",
    "QueryPager",
    "column_metadata",
]

#: like Salesforce, only so many locators stay open; the oldest unused one goes first
MAX_OPEN_LOCATORS = 200


@dataclass
class Locator:
    """A query's frozen result, served page by page."""

    result: QueryResult
    page_size: int
    api_version: str
    tooling: bool = False


@dataclass
class FirstPage:
    """The answer to a query, and what the org's faults react to: the queried object
    (lower-cased, "" if the query failed) and the stored records of the first page."""

    response: MockResponse
    sobject: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class NextPage:
    """The answer to a ``nextRecordsUrl`` call; ``page_no`` is None if it was refused."""

    response: MockResponse
    page_no: int | None = None


class QueryPager:
    """Runs queries over the org's tables and serves their pages.

    ``lock`` is the org's lock, held while a query reads the tables (a query result is a
    snapshot: later changes don't reach its pages) and while locators change.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self._locators: OrderedDict[str, Locator] = OrderedDict()
        self._locator_ids = itertools.count(1)

    def first(
        self,
        req: MockRequest,
        version: str,
        tables: Mapping[str, Table],
        page_size: int,
        long_text_page_size: int | None,
        *,
        tooling: bool = False,
    ) -> FirstPage:
        """``GET …/query?q=…``: the first page (a locator if there are more); with
        ``columns=true`` the query's columns instead of its records."""
        text = req.query.get("q")
        if not text:
            return FirstPage(sf_error(400, "MALFORMED_QUERY", "A query string has to be specified"))
        try:
            query = parse(text)
            with self.lock:
                result = execute(query, tables, float(version))
        except SoqlError as exc:
            return FirstPage(json_response(400, exc.body()))
        if req.query.get("columns", "").lower() == "true":
            return FirstPage(json_response(200, column_metadata(result)))
        size = _page_size_for(req, result, page_size, long_text_page_size)
        locator = Locator(result, size, version, tooling)
        response = self._page(locator, self._new_locator_id(locator), 0)
        first_page = [] if result.count_only else result.records[: locator.page_size]
        return FirstPage(response, result.table_name.lower(), first_page)

    def next(self, token: str) -> NextPage:
        """``GET …/query/<locator>-<offset>``: a later page of an open locator."""
        locator_id, _, offset_text = token.rpartition("-")
        with self.lock:
            locator = self._locators.get(locator_id)
            if locator is not None:
                self._locators.move_to_end(locator_id)
        if (
            locator is None
            or not offset_text.isdigit()
            or not 0 < int(offset_text) < locator.result.total_size
        ):
            return NextPage(sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))
        offset = int(offset_text)
        return NextPage(
            self._page(locator, locator_id, offset), page_no=offset // locator.page_size
        )

    def _new_locator_id(self, locator: Locator) -> str:
        with self.lock:
            locator_id = f"01gMOCK{next(self._locator_ids):011d}"
            self._locators[locator_id] = locator
            while len(self._locators) > MAX_OPEN_LOCATORS:
                self._locators.popitem(last=False)
        return locator_id

    def _page(self, locator: Locator, locator_id: str, offset: int) -> MockResponse:
        result = locator.result
        stop = min(offset + locator.page_size, result.total_size)
        if result.count_only:
            stop = result.total_size
        done = stop >= result.total_size
        payload: dict[str, Any] = {}
        if locator.tooling:  # the Tooling API says a little more about each page
            payload["size"] = result.total_size
        payload.update(totalSize=result.total_size, done=done)
        api = "tooling/query" if locator.tooling else "query"
        if not done:
            payload["nextRecordsUrl"] = (
                f"/services/data/v{locator.api_version}/{api}/{locator_id}-{stop}"
            )
        if locator.tooling:
            payload["queryLocator"] = None if done else f"{locator_id}-{stop}"
            payload["entityTypeName"] = result.table_name
        payload["records"] = records = result.render(offset, stop, locator.api_version)
        response = json_response(200, payload)
        response.records = len(records)
        return response


def _page_size_for(
    req: MockRequest, result: QueryResult, page_size: int, long_text_page_size: int | None
) -> int:
    """The org's page size, lowered by ``Sforce-Query-Options: batchSize=N`` (200–2000)
    and, for a query that selects long text, by the org's long-text page size."""
    size = page_size
    options = req.headers.get("Sforce-Query-Options", "")
    for option in options.split(","):
        key, _, value = option.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            size = min(size, max(200, min(2000, int(value))))
    if result.long_text and long_text_page_size:
        size = min(size, long_text_page_size)
    return size


def column_metadata(result: QueryResult) -> dict[str, Any]:
    """What ``query?q=…&columns=true`` answers: the SELECT list's columns, a parent
    relationship as one column whose ``joinColumns`` are the parent's fields."""
    columns = [] if result.count_only else result.columns
    return {
        "columnMetadata": [_column(c) for c in columns],
        "entityName": result.table_name,
        "groupBy": False,
        "idSelected": any(isinstance(c, FieldDef) and c.name == "Id" for c in columns),
        "keyPrefix": KEY_PREFIXES.get(result.table_name),
    }


def _column(column: FieldDef | Relation) -> dict[str, Any]:
    if isinstance(column, Relation):
        return {
            "aggregate": False,
            "apexType": None,
            "booleanType": False,
            "columnName": column.name,
            "custom": column.name.endswith("__r"),
            "displayName": column.name,
            "foreignKeyName": column.reference.name,
            "insertable": False,
            "joinColumns": [_column(f) for f in column.fields],
            "numberType": False,
            "textType": False,
            "updatable": False,
        }
    return {
        "aggregate": False,
        "apexType": column.apex_type,
        "booleanType": column.type == "boolean",
        "columnName": column.name,
        "custom": column.name.endswith("__c"),
        "displayName": column.name,
        "foreignKeyName": None,
        "insertable": column.is_updateable,
        "joinColumns": [],
        "numberType": column.type in NUMBER_TYPES,
        "textType": column.type in STRING_TYPES or column.type == "textarea",
        "updatable": column.is_updateable,
    }
