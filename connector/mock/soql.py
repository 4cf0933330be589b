"""A small SOQL engine for the mock org: tokenizer → parser (AST) → executor.

It implements the subset of SOQL the SPEC (§8) names, typed the way Salesforce types it,
so that a query the mock accepts is one a real org accepts:

    SELECT f1, f2 | COUNT() FROM Obj
      [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n]

    cond := term (AND term)* | term (OR term)*        -- mixing needs parentheses
    term := NOT term | '(' cond ')' | field op literal
          | field [NOT] IN '(' literal, ... ')' | field LIKE 'pattern'

Literals: datetimes unquoted with a zone (``2026-10-05T00:00:00Z``, ``...000+0000``,
``...+00:00``), dates unquoted (``2026-10-05``), strings single-quoted with backslash
escapes, numbers, ``true``/``false``, ``null``. Each literal must match the type of the
field it is compared with, else ``INVALID_FIELD`` as Salesforce answers.

Salesforce semantics kept on purpose:

* keywords, object and field names are case-insensitive; records come back with the
  field's canonical case;
* string comparisons (``=``, ``IN``, ``LIKE``, ``ORDER BY``) are case-insensitive;
* Id / reference fields accept 15- or 18-character ids and compare on the
  case-sensitive 15-character form;
* ``!=`` and ``NOT IN`` match records whose value is null (SOQL is not SQL: there is
  no three-valued logic); ``<``, ``>``, ``<=``, ``>=`` and ``LIKE`` never match null;
  on a boolean field ``null`` means ``false``;
* nulls sort first unless ``NULLS LAST`` is given;
* long-text (``textarea``) and ``base64`` fields can be selected but neither filtered
  nor sorted.

Tables are column-oriented: every filterable field keeps a list of pre-typed values
(datetimes as integer epoch milliseconds, strings lower-cased, numbers as floats), so a
filter is a list comprehension over one column and nothing is re-parsed per comparison.
"""

from __future__ import annotations

import itertools
import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "SoqlError",
    "FieldDef",
    "Table",
    "Query",
    "QueryResult",
    "Relation",
    "parse",
    "execute",
    "run_query",
    "render_record",
    "to18",
    "is_sf_id",
    "parse_datetime_ms",
    "format_datetime_ms",
    "infer_field_type",
    "LONG_TEXT_TYPES",
]

# --------------------------------------------------------------------------- errors


class SoqlError(Exception):
    """A query Salesforce would refuse: HTTP 400 with ``[{"message", "errorCode"}]``."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    def body(self) -> list[dict[str, str]]:
        """The Salesforce error body for this error."""
        return [{"message": self.message, "errorCode": self.error_code}]


def _position(text: str, pos: int) -> tuple[int, int, str]:
    """(row, column, line) of character ``pos`` in ``text``, 1-based like Salesforce."""
    pos = max(0, min(pos, len(text)))
    row = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start:] if end < 0 else text[start:end]
    return row, pos - start + 1, line


def _error(code: str, text: str, pos: int, message: str) -> SoqlError:
    """An error whose message points at ``pos`` the way Salesforce's do."""
    row, col, line = _position(text, pos)
    caret = " " * (col - 1) + "^"
    return SoqlError(code, f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{col}\n{message}")


# ------------------------------------------------------------------ ids and datetimes

_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_ID_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def is_sf_id(value: object) -> bool:
    """True if ``value`` is a syntactically valid 15- or 18-character Salesforce id."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def to18(value: str) -> str:
    """The 18-character form of a 15- or 18-character id (other strings unchanged)."""
    if len(value) != 15 or not is_sf_id(value):
        return value
    suffix = ""
    for block in range(3):
        bits = 0
        for offset, char in enumerate(value[block * 5 : block * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << offset
        suffix += _ID_SUFFIX_CHARS[bits]
    return value + suffix


def parse_datetime_ms(value: str) -> int:
    """Epoch milliseconds of an ISO-8601 datetime (``Z``, ``+0000`` or ``+00:00``).

    A value without a zone is taken as UTC. Raises ``ValueError`` when unparseable.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return (parsed - _EPOCH) // _MS


def format_datetime_ms(ms: int) -> str:
    """Salesforce's REST datetime form: ``2026-10-06T14:03:22.000+0000``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}+0000"


# ----------------------------------------------------------------------- field types

STRING_TYPES = frozenset({"string", "picklist", "email", "phone", "url", "combobox"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"double", "int", "currency", "percent"})
LONG_TEXT_TYPES = frozenset({"textarea", "base64"})
_TYPE_NAMES = {  # the type names Salesforce's filter errors use
    "datetime": "dateTime",
    "date": "date",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "int": "integer",
    "boolean": "boolean",
}
_LENGTHS = {"string": 255, "picklist": 255, "id": 18, "reference": 18, "textarea": 131072}
_DATETIME_VALUE_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_DATE_VALUE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class FieldDef:
    """One field of an sObject, as ``describe`` reports it.

    ``reference_to`` and ``relationship_name`` make a reference field a parent
    relationship (``CreatedById`` → ``CreatedBy.Name``); ``label`` defaults to the API name
    made readable; ``updateable`` defaults to "a custom field" (system fields are read-only).
    """

    name: str
    type: str
    nillable: bool = True
    min_version: float = 0.0
    filterable: bool | None = None
    sortable: bool | None = None
    label: str | None = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    updateable: bool | None = None
    picklist: tuple[str, ...] = ()
    length: int | None = None

    @property
    def is_filterable(self) -> bool:
        """Whether WHERE may use the field (long text and base64 may not)."""
        if self.filterable is not None:
            return self.filterable
        return self.type not in LONG_TEXT_TYPES

    @property
    def is_sortable(self) -> bool:
        """Whether ORDER BY may use the field (long text and base64 may not)."""
        if self.sortable is not None:
            return self.sortable
        return self.type not in LONG_TEXT_TYPES

    @property
    def display_label(self) -> str:
        """The field's label (``TokensConsumed__c`` → "TokensConsumed" if none is set)."""
        return self.label or self.name.removesuffix("__c").replace("_", " ")

    @property
    def is_updateable(self) -> bool:
        if self.updateable is not None:
            return self.updateable
        return self.name.endswith("__c")

    @property
    def soap_type(self) -> str:
        """The field's type in SOAP terms (``xsd:string``, ``tns:ID``, …)."""
        return _SOAP_TYPES.get(self.type, "xsd:string")

    @property
    def apex_type(self) -> str:
        """The field's Apex type, as query ``columnMetadata`` names it."""
        return _APEX_TYPES.get(self.type, "String")

    def describe(self) -> dict[str, Any]:
        """The field's entry in a ``describe`` response (Salesforce's DescribeFieldResult
        keys; the ones the mock has no use for carry their usual defaults)."""
        numeric = self.type in NUMBER_TYPES
        length = self.length if self.length is not None else _LENGTHS.get(self.type, 0)
        entry: dict[str, Any] = {
            "aggregatable": self.type not in LONG_TEXT_TYPES,
            "autoNumber": False,
            "byteLength": length * 3,
            "calculated": False,
            "cascadeDelete": False,
            "caseSensitive": False,
            "createable": self.is_updateable,
            "custom": self.name.endswith("__c"),
            "defaultValue": False if self.type == "boolean" else None,
            "defaultedOnCreate": self.type == "boolean" or self.name in _DEFAULTED,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": 9 if self.type == "int" else 0,
            "externalId": False,
            "extraTypeInfo": None,
            "filterable": self.is_filterable,
            "groupable": self.type not in LONG_TEXT_TYPES and not numeric,
            "htmlFormatted": False,
            "idLookup": self.type == "id",
            "label": self.display_label,
            "length": length,
            "name": self.name,
            "nameField": self.name == "Name",
            "namePointing": False,
            "nillable": self.nillable,
            "permissionable": self.nillable and self.name.endswith("__c"),
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": 0,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": False,
            "scale": 0,
            "soapType": self.soap_type,
            "sortable": self.is_sortable,
            "type": self.type,
            "unique": False,
            "updateable": self.is_updateable,
        }
        if self.type == "textarea":
            entry["extraTypeInfo"] = "plaintextarea"
        if self.type in ("double", "currency", "percent"):
            entry.update(precision=18, scale=0)
        return entry


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "datetime": "xsd:dateTime",
    "date": "xsd:date",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "base64": "xsd:base64Binary",
}
_APEX_TYPES = {
    "id": "Id",
    "reference": "Id",
    "boolean": "Boolean",
    "datetime": "Datetime",
    "date": "Date",
    "double": "Double",
    "currency": "Decimal",
    "percent": "Double",
    "int": "Integer",
    "base64": "Blob",
}
_DEFAULTED = frozenset({"OwnerId", "CreatedById", "LastModifiedById", "CreatedDate"})


def infer_field_type(values: Iterable[Any]) -> str:
    """The Salesforce type a field most likely has, judged from its JSON values."""
    kinds: set[str] = set()
    long_text = False
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, (int, float)):
            kinds.add("double")
        elif isinstance(value, str):
            if _DATETIME_VALUE_RE.fullmatch(value):
                kinds.add("datetime")
            elif _DATE_VALUE_RE.fullmatch(value):
                kinds.add("date")
            else:
                kinds.add("string")
                long_text = long_text or len(value) > 255
        else:
            kinds.add("string")
        if len(kinds) > 1:
            break
    if len(kinds) != 1 or kinds == {"string"}:
        return "textarea" if long_text else "string"
    return kinds.pop()


def _typed_converter(ftype: str) -> Callable[[Any], Any] | None:
    """The function turning a raw JSON value into the comparable column value."""
    if ftype == "datetime":
        return lambda v: None if v is None else parse_datetime_ms(v)
    if ftype == "date":
        return lambda v: None if v is None else date.fromisoformat(v[:10]).toordinal()
    if ftype in NUMBER_TYPES:
        return lambda v: None if v is None else float(v)
    if ftype == "boolean":
        return lambda v: bool(v) if v is not None else False
    if ftype in ID_TYPES:
        return lambda v: None if v is None else (v[:15] if is_sf_id(v) else str(v))
    if ftype in LONG_TEXT_TYPES:
        return None
    return lambda v: None if v is None else str(v).lower()


def _wire_converter(ftype: str) -> Callable[[Any], Any]:
    """The function turning a raw JSON value into what the REST API returns."""
    if ftype == "datetime":
        return _wire_datetime
    if ftype in ("double", "currency", "percent"):
        return lambda v: None if v is None else float(v)
    if ftype == "int":
        return lambda v: None if v is None else int(v)
    if ftype == "boolean":
        return lambda v: bool(v) if v is not None else False
    if ftype == "date":
        return lambda v: None if v is None else str(v)[:10]
    if ftype in ID_TYPES:
        return lambda v: to18(v) if isinstance(v, str) else v
    return lambda v: v


def _wire_datetime(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) == 28 and value.endswith("+0000") and value[19] == ".":
        return value
    return format_datetime_ms(parse_datetime_ms(value))


# ----------------------------------------------------------------------------- tables


class Table:
    """One sObject's records, its schema, typed columns and an Id index.

    Not thread-safe on its own: the mock org serialises access with its lock. Records are
    never mutated in place (``replace`` swaps in a new dict), so a query result that holds
    references to them is a stable snapshot.
    """

    def __init__(self, name: str, known_fields: Mapping[str, FieldDef] | None = None) -> None:
        self.name = name
        self._known = {k.lower(): v for k, v in (known_fields or {}).items()}
        self.fields: dict[str, FieldDef] = {}
        self.records: list[dict[str, Any]] = []
        self.columns: dict[str, list[Any]] = {}
        self._converters: dict[str, Callable[[Any], Any]] = {}
        self._index: dict[str, int] = {}
        self._revision = 0  # raised by every append/replace
        self._distinct: dict[str, tuple[int, list[str]]] = {}

    # -- building
    @classmethod
    def build(
        cls,
        name: str,
        records: list[dict[str, Any]],
        known_fields: Mapping[str, FieldDef] | None = None,
        always: Sequence[str] = ("Id", "CreatedDate", "SystemModstamp"),
    ) -> Table:
        """A table over ``records`` (taken as they are); schema from keys + ``always``."""
        table = cls(name, known_fields)
        keys = dict.fromkeys(itertools.chain(always, itertools.chain.from_iterable(records)))
        has_attributes = keys.pop("attributes", False) is None
        names: dict[str, str] = {}
        for key in keys:
            names.setdefault(key.lower(), key)
        for canonical in names.values():
            table._add_field_def(canonical, (r.get(canonical) for r in records))
        if len(names) != len(keys) or has_attributes:
            canonical_keys = {f.name for f in table.fields.values()}
            records = [_canonical(r, canonical_keys, table.fields) for r in records]
        table.records = records
        for lower, fdef in table.fields.items():
            table._build_column(lower, fdef)
        table._index = {
            r["Id"][:15]: row for row, r in enumerate(records) if isinstance(r.get("Id"), str)
        }
        return table

    def _add_field_def(self, name: str, values: Iterable[Any]) -> FieldDef:
        lower = name.lower()
        known = self._known.get(lower)
        fdef = replace(known, name=name) if known else FieldDef(name, infer_field_type(values))
        self.fields[lower] = fdef
        return fdef

    def add_known_field(self, fdef: FieldDef) -> None:
        """Declare a field no record needs to carry (e.g. ``EventLogFile.LogFile``)."""
        lower = fdef.name.lower()
        if lower not in self.fields:
            self.fields[lower] = fdef
            self._build_column(lower, fdef)

    def _build_column(self, lower: str, fdef: FieldDef) -> None:
        convert = _typed_converter(fdef.type)
        if convert is None:
            return
        self._converters[lower] = convert
        name = fdef.name
        try:
            self.columns[lower] = [convert(r.get(name)) for r in self.records]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{self.name}.{name}: a value is not a valid {fdef.type}: {exc}"
            ) from exc

    def _index_record(self, row: int, record: Mapping[str, Any]) -> None:
        record_id = record.get("Id")
        if isinstance(record_id, str):
            self._index[record_id[:15]] = row

    # -- reading
    def __len__(self) -> int:
        return len(self.records)

    def field(self, name: str, api_version: float) -> FieldDef | None:
        """The field named ``name`` (any case) if it exists in ``api_version``."""
        fdef = self.fields.get(name.lower())
        if fdef is None or api_version < fdef.min_version:
            return None
        return fdef

    def visible_fields(self, api_version: float) -> list[FieldDef]:
        """The fields that exist in ``api_version``, in schema order."""
        return [f for f in self.fields.values() if api_version >= f.min_version]

    def distinct_values(self, name: str) -> list[str]:
        """The sorted distinct non-null values of field ``name`` (as text), kept until a
        record is added or replaced: a describe asks for them every time."""
        kept = self._distinct.get(name)
        if kept is None or kept[0] != self._revision:
            values = sorted({str(v) for r in self.records if (v := r.get(name)) is not None})
            kept = self._distinct[name] = (self._revision, values)
        return kept[1]

    def find(self, record_id: str) -> int | None:
        """Row number of the record with this 15- or 18-character id."""
        return self._index.get(record_id[:15])

    # -- writing
    def append(self, record: dict[str, Any]) -> int:
        """Add a record (new keys become new fields); returns its row number."""
        record = self._adopt(record)
        self.records.append(record)
        for lower, convert in self._converters.items():
            self.columns[lower].append(convert(record.get(self.fields[lower].name)))
        row = len(self.records) - 1
        self._index_record(row, record)
        self._revision += 1
        return row

    def replace(self, row: int, record: dict[str, Any]) -> None:
        """Swap the record at ``row`` for ``record`` (a new dict)."""
        record = self._adopt(record)
        self.records[row] = record
        for lower, convert in self._converters.items():
            self.columns[lower][row] = convert(record.get(self.fields[lower].name))
        self._index_record(row, record)
        self._revision += 1

    def _adopt(self, record: dict[str, Any]) -> dict[str, Any]:
        """Register unseen keys as fields and give known keys their canonical case."""
        for key, value in record.items():
            lower = key.lower()
            if key == "attributes" or lower in self.fields:
                continue
            fdef = self._add_field_def(key, [value])
            self._build_column(lower, fdef)
        keys = {f.name for f in self.fields.values()}
        adopted = _canonical(record, keys, self.fields)
        for lower, convert in self._converters.items():
            name = self.fields[lower].name
            try:
                convert(adopted.get(name))
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"{self.name}.{name}: {adopted.get(name)!r} is not a valid "
                    f"{self.fields[lower].type}"
                ) from exc
        return adopted


def _canonical(
    record: dict[str, Any], canonical_keys: set[str], fields: Mapping[str, FieldDef]
) -> dict[str, Any]:
    """``record`` with every key in its field's canonical case (usually unchanged)."""
    if "attributes" not in record and all(k in canonical_keys for k in record):
        return record
    return {fields[k.lower()].name: v for k, v in record.items() if k != "attributes"}


# ---------------------------------------------------------------------------- tokens

_KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "TRUE",
        "FALSE",
        "NULL",
        "OFFSET",
        "GROUP",
        "HAVING",
        "WITH",
        "FOR",
        "USING",
        "INCLUDES",
        "EXCLUDES",
    }
)
_DATETIME_TOKEN_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})"
)
_DATE_TOKEN_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?![0-9A-Za-z_:.])")
_NUMBER_TOKEN_RE = re.compile(r"[+-]?\d+(?:\.\d+)?(?![0-9A-Za-z_.:-])")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_ESCAPES = {
    "'": "'",
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    "_": "\\_",
    "%": "\\%",
}


@dataclass(frozen=True)
class Token:
    """One lexical token: kind is ident/kw/string/number/datetime/date/op/punct/eof."""

    kind: str
    value: Any
    pos: int
    text: str


class _Lexer:
    """Splits a SOQL string into tokens, rejecting anything SOQL would not lex."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            token = self._next()
            out.append(token)
            if token.kind == "eof":
                return out

    def _fail(self, pos: int, message: str) -> SoqlError:
        return _error("MALFORMED_QUERY", self.text, pos, message)

    def _next(self) -> Token:
        text = self.text
        while self.pos < len(text) and text[self.pos].isspace():
            self.pos += 1
        start = self.pos
        if start >= len(text):
            return Token("eof", None, start, "")
        char = text[start]
        if char == "'":
            return self._string(start)
        if char.isdigit() or (char in "+-" and text[start + 1 : start + 2].isdigit()):
            return self._numeric(start)
        if char.isalpha() or char == "_":
            match = _IDENT_RE.match(text, start)
            assert match is not None
            self.pos = match.end()
            word = match.group()
            if word.upper() in _KEYWORDS:
                return Token("kw", word.upper(), start, word)
            return Token("ident", word, start, word)
        for op in _OPERATORS:
            if text.startswith(op, start):
                self.pos = start + len(op)
                return Token("op", "!=" if op == "<>" else op, start, op)
        if char in ",()":
            self.pos = start + 1
            return Token("punct", char, start, char)
        raise self._fail(start, f"unexpected token: '{char}'")

    def _string(self, start: int) -> Token:
        text = self.text
        chars: list[str] = []
        pos = start + 1
        while pos < len(text):
            char = text[pos]
            if char == "'":
                self.pos = pos + 1
                return Token("string", "".join(chars), start, text[start : pos + 1])
            if char == "\\":
                escaped = text[pos + 1 : pos + 2]
                if escaped not in _ESCAPES:
                    raise self._fail(
                        pos,
                        f"Invalid string literal '{text[start : pos + 2]}'. "
                        "Illegal character sequence '\\" + escaped + "'",
                    )
                chars.append(_ESCAPES[escaped])
                pos += 2
                continue
            chars.append(char)
            pos += 1
        raise self._fail(start, "unexpected token: unterminated string literal")

    def _numeric(self, start: int) -> Token:
        text = self.text
        match = _DATETIME_TOKEN_RE.match(text, start)
        if match and not _ident_char_at(text, match.end()):
            self.pos = match.end()
            return Token("datetime", self._datetime_value(match, start), start, match.group())
        match = _DATE_TOKEN_RE.match(text, start)
        if match:
            self.pos = match.end()
            try:
                value = date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                raise self._fail(start, f"invalid date: {match.group()}") from None
            return Token("date", value, start, match.group())
        match = _NUMBER_TOKEN_RE.match(text, start)
        if match:
            self.pos = match.end()
            word = match.group()
            number: float | int = float(word) if "." in word else int(word)
            return Token("number", number, start, word)
        end = start
        while end < len(text) and not text[end].isspace() and text[end] not in ",()":
            end += 1
        raise self._fail(start, f"unexpected token: '{text[start:end]}'")

    def _datetime_value(self, match: re.Match[str], start: int) -> int:
        zone = match[8]
        zone = "+00:00" if zone == "Z" else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
        fraction = (match[7] or ".0")[1:].ljust(3, "0")
        iso = f"{match[1]}-{match[2]}-{match[3]}T{match[4]}:{match[5]}:{match[6]}.{fraction}{zone}"
        try:
            return parse_datetime_ms(iso)
        except ValueError:
            raise self._fail(start, f"invalid dateTime: {match.group()}") from None


def _ident_char_at(text: str, pos: int) -> bool:
    return pos < len(text) and (text[pos].isalnum() or text[pos] in "_.:")


# ------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Literal:
    """A typed literal: kind is string/number/datetime/date/boolean/null."""

    kind: str
    value: Any
    pos: int
    text: str


@dataclass(frozen=True)
class FieldRef:
    name: str
    pos: int


@dataclass(frozen=True)
class Compare:
    field: FieldRef
    op: str
    literal: Literal


@dataclass(frozen=True)
class InList:
    field: FieldRef
    negated: bool
    literals: tuple[Literal, ...]


@dataclass(frozen=True)
class Like:
    field: FieldRef
    literal: Literal


@dataclass(frozen=True)
class BoolOp:
    op: str  # "AND" | "OR"
    children: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    child: Any


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    """A parsed SOQL query. ``fields`` is empty for ``SELECT COUNT()``."""

    text: str
    fields: tuple[FieldRef, ...]
    count_only: bool
    sobject: FieldRef
    where: Any
    order_by: tuple[OrderItem, ...]
    limit: int | None


# ---------------------------------------------------------------------------- parser


class _Parser:
    """Recursive-descent parser over the token list."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _Lexer(text).tokens()
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def _is(self, kind: str, value: Any = None) -> bool:
        return self.tok.kind == kind and (value is None or self.tok.value == value)

    def _unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.tok
        shown = "<EOF>" if token.kind == "eof" else token.text
        return _error("MALFORMED_QUERY", self.text, token.pos, f"unexpected token: '{shown}'")

    def _expect(self, kind: str, value: Any = None) -> Token:
        if not self._is(kind, value):
            raise self._unexpected()
        return self._advance()

    # -- grammar
    def query(self) -> Query:
        if not self.text.strip():
            raise SoqlError("MALFORMED_QUERY", "A query string has to be specified")
        self._expect("kw", "SELECT")
        fields, count_only = self._select_list()
        self._expect("kw", "FROM")
        sobject_token = self._expect("ident")
        sobject = FieldRef(sobject_token.value, sobject_token.pos)
        where = None
        if self._is("kw", "WHERE"):
            self._advance()
            where = self._condition()
        order: tuple[OrderItem, ...] = ()
        if self._is("kw", "ORDER"):
            self._advance()
            self._expect("kw", "BY")
            order = self._order_list()
        limit = None
        if self._is("kw", "LIMIT"):
            self._advance()
            token = self._expect("number")
            if not isinstance(token.value, int) or token.value < 0:
                raise self._unexpected(token)
            limit = token.value
        if not self._is("eof"):
            raise self._unexpected()
        return Query(self.text, fields, count_only, sobject, where, order, limit)

    def _select_list(self) -> tuple[tuple[FieldRef, ...], bool]:
        if (
            self._is("ident")
            and self.tok.value.upper() == "COUNT"
            and self.tokens[self.i + 1].kind == "punct"
            and self.tokens[self.i + 1].value == "("
        ):
            self.i += 2
            self._expect("punct", ")")
            return (), True
        fields = [self._field()]
        while self._is("punct", ","):
            self._advance()
            fields.append(self._field())
        return tuple(fields), False

    def _field(self) -> FieldRef:
        token = self._expect("ident")
        return FieldRef(token.value, token.pos)

    def _condition(self) -> Any:
        first = self._term()
        if not (self._is("kw", "AND") or self._is("kw", "OR")):
            return first
        op = self.tok.value
        children = [first]
        while self._is("kw", op):
            self._advance()
            children.append(self._term())
        other = "OR" if op == "AND" else "AND"
        if self._is("kw", other):
            raise self._unexpected()  # mixing AND and OR needs parentheses
        return BoolOp(op, tuple(children))

    def _term(self) -> Any:
        if self._is("kw", "NOT"):
            self._advance()
            return Not(self._term())
        if self._is("punct", "("):
            self._advance()
            inner = self._condition()
            self._expect("punct", ")")
            return inner
        return self._comparison()

    def _comparison(self) -> Any:
        field_ref = self._field()
        if self._is("op"):
            op = self._advance().value
            return Compare(field_ref, op, self._literal())
        negated = False
        if self._is("kw", "NOT"):
            self._advance()
            negated = True
            if not self._is("kw", "IN"):
                raise self._unexpected()
        if self._is("kw", "IN"):
            self._advance()
            return InList(field_ref, negated, self._literal_list())
        if self._is("kw", "LIKE"):
            self._advance()
            return Like(field_ref, self._literal())
        raise self._unexpected()

    def _literal_list(self) -> tuple[Literal, ...]:
        self._expect("punct", "(")
        items = [self._literal()]
        while self._is("punct", ","):
            self._advance()
            items.append(self._literal())
        self._expect("punct", ")")
        return tuple(items)

    def _literal(self) -> Literal:
        token = self.tok
        if token.kind in ("string", "number", "datetime", "date"):
            self._advance()
            return Literal(token.kind, token.value, token.pos, token.text)
        if token.kind == "kw" and token.value in ("TRUE", "FALSE"):
            self._advance()
            return Literal("boolean", token.value == "TRUE", token.pos, token.text)
        if token.kind == "kw" and token.value == "NULL":
            self._advance()
            return Literal("null", None, token.pos, token.text)
        raise self._unexpected()

    def _order_list(self) -> tuple[OrderItem, ...]:
        items = [self._order_item()]
        while self._is("punct", ","):
            self._advance()
            items.append(self._order_item())
        return tuple(items)

    def _order_item(self) -> OrderItem:
        field_ref = self._field()
        descending = False
        if self._is("kw", "ASC") or self._is("kw", "DESC"):
            descending = self._advance().value == "DESC"
        nulls_last = False
        if self._is("kw", "NULLS"):
            self._advance()
            if not (self._is("kw", "FIRST") or self._is("kw", "LAST")):
                raise self._unexpected()
            nulls_last = self._advance().value == "LAST"
        return OrderItem(field_ref, descending, nulls_last)


def parse(text: str) -> Query:
    """Parse a SOQL string; raises ``SoqlError(MALFORMED_QUERY)`` on a syntax error."""
    return _Parser(text).query()


# -------------------------------------------------------------------------- executor


@dataclass(frozen=True)
class Relation:
    """A parent relationship in a SELECT list (``CreatedBy.Name``): the reference field
    it goes through, the parent object and the parent's fields selected, in order."""

    name: str
    reference: FieldDef
    target: str
    fields: tuple[FieldDef, ...]


@dataclass
class QueryResult:
    """The rows of one query, frozen at execution time (a query locator's snapshot).

    ``fields`` are the queried object's own selected fields; ``columns`` is the SELECT
    list in order, a parent relationship appearing once where it is first named, and
    ``parents`` holds, per relationship, each row's parent record (None if it has none).
    """

    table_name: str
    fields: list[FieldDef]
    records: list[dict[str, Any]]
    count_only: bool
    long_text: bool = False
    columns: list[FieldDef | Relation] = field(default_factory=list)
    parents: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    _wire: list[Callable[[Any], Any]] = field(default_factory=list, repr=False)

    @property
    def total_size(self) -> int:
        return len(self.records)

    def render(self, start: int, stop: int, api_version: str) -> list[dict[str, Any]]:
        """Records ``start:stop`` in REST wire form (``attributes`` first)."""
        if self.count_only:
            return []
        if not self.parents:
            if not self._wire:
                self._wire = [_wire_converter(f.type) for f in self.fields]
            return [
                render_record(self.table_name, self.fields, r, api_version, self._wire)
                for r in self.records[start:stop]
            ]
        return [self._render_row(row, api_version) for row in range(start, stop)]

    def _render_row(self, row: int, api_version: str) -> dict[str, Any]:
        record = self.records[row]
        out = render_record(self.table_name, [], record, api_version)
        for column in self.columns:
            if isinstance(column, FieldDef):
                own = render_record(self.table_name, [column], record, api_version)
                out[column.name] = own[column.name]
                continue
            parent = self.parents[column.name][row]
            out[column.name] = (
                None
                if parent is None
                else render_record(column.target, column.fields, parent, api_version)
            )
        return out


def render_record(
    table_name: str,
    fields: Sequence[FieldDef],
    record: Mapping[str, Any],
    api_version: str,
    wire: Sequence[Callable[[Any], Any]] | None = None,
) -> dict[str, Any]:
    """One record as the REST API returns it: ``attributes`` then the fields in order."""
    record_id = to18(str(record.get("Id", "")))
    url = f"/services/data/v{api_version}/sobjects/{table_name}/{record_id}"
    out: dict[str, Any] = {"attributes": {"type": table_name, "url": url}}
    converters = wire or [_wire_converter(f.type) for f in fields]
    for fdef, convert in zip(fields, converters, strict=False):
        if fdef.type == "base64":
            out[fdef.name] = f"{url}/{fdef.name}"
        else:
            out[fdef.name] = convert(record.get(fdef.name))
    return out


class _Executor:
    """Resolves names and types against the tables, then filters, sorts and limits."""

    def __init__(self, query: Query, tables: Mapping[str, Table], api_version: float) -> None:
        self.q = query
        self.tables = tables
        self.version = api_version
        self.table = self._resolve_table()

    def _fail(self, code: str, pos: int, message: str) -> SoqlError:
        return _error(code, self.q.text, pos, message)

    def _resolve_table(self) -> Table:
        ref = self.q.sobject
        table = self.tables.get(ref.name.lower())
        if table is None:
            raise self._fail(
                "INVALID_TYPE",
                ref.pos,
                f"sObject type '{ref.name}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        return table

    def resolve(self, ref: FieldRef) -> FieldDef:
        fdef = self.table.field(ref.name, self.version)
        if fdef is not None:
            return fdef
        if "." in ref.name:
            relation = ref.name.split(".", 1)[0]
            raise self._fail(
                "INVALID_FIELD",
                ref.pos,
                f"Didn't understand relationship '{relation}' in field path. If you are "
                "attempting to use a custom relationship, be sure to append the '__r' after "
                "the custom relationship name. Please reference your WSDL or the describe "
                "call for the appropriate names.",
            )
        raise self._fail(
            "INVALID_FIELD",
            ref.pos,
            f"No such column '{ref.name}' on entity '{self.table.name}'. If you are attempting "
            "to use a custom field, be sure to append the '__c' after the custom field name. "
            "Please reference your WSDL or the describe call for the appropriate names.",
        )

    # -- select
    def select_columns(self) -> list[FieldDef | Relation]:
        """The SELECT list: own fields, and parent relationships (``Rel.Field``) grouped
        under the relationship where it is first named."""
        seen: set[str] = set()
        out: list[FieldDef | Relation] = []
        relations: dict[str, int] = {}
        for ref in self.q.fields:
            if "." in ref.name:
                relation, fdef = self.resolve_parent(ref)
                name = f"{relation.name}.{fdef.name}"
            else:
                fdef = self.resolve(ref)
                name = fdef.name
            if name.lower() in seen:
                raise self._fail("MALFORMED_QUERY", ref.pos, f"duplicate field selected: {name}")
            seen.add(name.lower())
            if "." not in ref.name:
                out.append(fdef)
            elif relation.name in relations:
                at = relations[relation.name]
                known = out[at]
                assert isinstance(known, Relation)
                out[at] = replace(known, fields=(*known.fields, fdef))
            else:
                relations[relation.name] = len(out)
                out.append(replace(relation, fields=(fdef,)))
        return out

    def resolve_parent(self, ref: FieldRef) -> tuple[Relation, FieldDef]:
        """``Rel.Field`` through a reference field whose parent object the org has."""
        relation_name, _, name = ref.name.partition(".")
        reference = next(
            (
                f
                for f in self.table.visible_fields(self.version)
                if f.relationship_name and f.relationship_name.lower() == relation_name.lower()
            ),
            None,
        )
        parents = [self.tables.get(t.lower()) for t in reference.reference_to] if reference else []
        parent = next((t for t in parents if t is not None), None)
        if reference is None or parent is None or "." in name:
            self.resolve(ref)  # raises Salesforce's "Didn't understand relationship"
        assert reference is not None and parent is not None and reference.relationship_name
        fdef = parent.field(name, self.version)
        if fdef is None:
            raise self._fail(
                "INVALID_FIELD",
                ref.pos,
                f"No such column '{name}' on entity '{parent.name}'. If you are attempting "
                "to use a custom field, be sure to append the '__c' after the custom field "
                "name. Please reference your WSDL or the describe call for the appropriate "
                "names.",
            )
        relation = Relation(reference.relationship_name, reference, parent.name, ())
        return relation, fdef

    # -- where
    def filterable(self, ref: FieldRef) -> FieldDef:
        fdef = self.resolve(ref)
        if not fdef.is_filterable:
            raise self._fail(
                "INVALID_FIELD", ref.pos, f"field '{fdef.name}' can not be filtered in a query call"
            )
        return fdef

    def coerce(self, fdef: FieldDef, lit: Literal) -> Any:
        """The literal as a column value of ``fdef``'s type, or INVALID_FIELD."""
        ftype = fdef.type
        if lit.kind == "null":
            return False if ftype == "boolean" else None
        if ftype in STRING_TYPES or ftype in ID_TYPES:
            if lit.kind != "string":
                raise self._fail(
                    "INVALID_FIELD",
                    lit.pos,
                    f"value of filter criterion for field '{fdef.name}' must be of type "
                    "string and should be enclosed in quotes",
                )
            if ftype in ID_TYPES:
                if not is_sf_id(lit.value):
                    raise self._fail(
                        "INVALID_QUERY_FILTER_OPERATOR", lit.pos, f"invalid ID field: {lit.value}"
                    )
                return lit.value[:15]
            return lit.value.lower()
        expected = {"datetime": "datetime", "date": "date", "boolean": "boolean"}.get(
            ftype, "number" if ftype in NUMBER_TYPES else None
        )
        if expected is None or lit.kind != expected:
            type_name = _TYPE_NAMES.get(ftype, ftype)
            raise self._fail(
                "INVALID_FIELD",
                lit.pos,
                f"value of filter criterion for field '{fdef.name}' must be of type "
                f"{type_name} and should not be enclosed in quotes",
            )
        if expected == "date":
            return lit.value.toordinal()
        if expected == "number":
            return float(lit.value)
        return lit.value

    def compile(self, node: Any) -> Callable[[Iterable[int]], list[int]]:
        """A function filtering row numbers (keeping their order) by ``node``."""
        if isinstance(node, BoolOp):
            parts = [self.compile(child) for child in node.children]
            return _and(parts) if node.op == "AND" else _or(parts)
        if isinstance(node, Not):
            inner = self.compile(node.child)
            return lambda rows: _complement(rows, inner)
        if isinstance(node, Compare):
            return self._compile_compare(node)
        if isinstance(node, InList):
            return self._compile_in(node)
        return self._compile_like(node)

    def _column(self, fdef: FieldDef) -> list[Any]:
        return self.table.columns[fdef.name.lower()]

    def _compile_compare(self, node: Compare) -> Callable[[Iterable[int]], list[int]]:
        fdef = self.filterable(node.field)
        value = self.coerce(fdef, node.literal)
        col = self._column(fdef)
        op = node.op
        if op not in ("=", "!=") and (fdef.type == "boolean" or value is None):
            raise self._fail(
                "INVALID_FIELD",
                node.literal.pos,
                f"invalid operator on {'null' if value is None else 'boolean'} "
                f"value for field '{fdef.name}': {op}",
            )
        if op == "=":
            return lambda rows: [i for i in rows if col[i] == value]
        if op == "!=":
            return lambda rows: [i for i in rows if col[i] != value]
        compare = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}[op]
        return lambda rows: [i for i in rows if (x := col[i]) is not None and compare(x, value)]

    def _compile_in(self, node: InList) -> Callable[[Iterable[int]], list[int]]:
        fdef = self.filterable(node.field)
        values = {self.coerce(fdef, lit) for lit in node.literals}
        col = self._column(fdef)
        if node.negated:
            return lambda rows: [i for i in rows if col[i] not in values]
        return lambda rows: [i for i in rows if col[i] in values]

    def _compile_like(self, node: Like) -> Callable[[Iterable[int]], list[int]]:
        fdef = self.filterable(node.field)
        if fdef.type not in STRING_TYPES and fdef.type not in ID_TYPES:
            raise self._fail(
                "INVALID_FIELD",
                node.field.pos,
                f"invalid operator on field '{fdef.name}': LIKE is only valid on string fields",
            )
        if node.literal.kind != "string":
            raise self._fail(
                "INVALID_FIELD",
                node.literal.pos,
                f"value of filter criterion for field '{fdef.name}' must be of "
                "type string and should be enclosed in quotes",
            )
        pattern = _like_regex(node.literal.value)
        col = self._column(fdef)
        return lambda rows: [i for i in rows if (x := col[i]) is not None and pattern.fullmatch(x)]

    # -- order
    def sort(self, rows: list[int]) -> list[int]:
        for item in reversed(self.q.order_by):
            fdef = self.resolve(item.field)
            if not fdef.is_sortable:
                raise self._fail(
                    "INVALID_FIELD",
                    item.field.pos,
                    f"field '{fdef.name}' can not be sorted in a query call",
                )
            col = self._column(fdef)
            present = [i for i in rows if col[i] is not None]
            missing = [i for i in rows if col[i] is None]
            present.sort(key=col.__getitem__, reverse=item.descending)
            rows = present + missing if item.nulls_last else missing + present
        return rows

    def run(self) -> QueryResult:
        columns = self.select_columns()
        fields = [c for c in columns if isinstance(c, FieldDef)]
        rows: Iterable[int] = range(len(self.table.records))
        if self.q.where is not None:
            rows = self.compile(self.q.where)(rows)
        rows = self.sort(list(rows)) if self.q.order_by else list(rows)
        if self.q.limit is not None:
            rows = rows[: self.q.limit]
        records = [self.table.records[i] for i in rows]
        parents: dict[str, list[dict[str, Any] | None]] = {}
        for column in columns:
            if isinstance(column, Relation):
                parents[column.name] = self._parents(column, records)
        return QueryResult(
            table_name=self.table.name,
            fields=fields,
            records=records,
            count_only=self.q.count_only,
            long_text=any(
                f.type in LONG_TEXT_TYPES
                for c in columns
                for f in ([c] if isinstance(c, FieldDef) else c.fields)
            ),
            columns=columns,
            parents=parents,
        )

    def _parents(
        self, relation: Relation, records: list[dict[str, Any]]
    ) -> list[dict[str, Any] | None]:
        """Each record's parent through ``relation`` (looked up now: a query is a snapshot)."""
        parent = self.tables[relation.target.lower()]
        out: list[dict[str, Any] | None] = []
        for record in records:
            parent_id = record.get(relation.reference.name)
            row = parent.find(parent_id) if isinstance(parent_id, str) and parent_id else None
            out.append(None if row is None else parent.records[row])
        return out


def _and(parts: list[Callable[[Iterable[int]], list[int]]]) -> Callable[[Iterable[int]], list[int]]:
    def run(rows: Iterable[int]) -> list[int]:
        current = rows
        for part in parts:
            current = part(current)
        return list(current)

    return run


def _or(parts: list[Callable[[Iterable[int]], list[int]]]) -> Callable[[Iterable[int]], list[int]]:
    def run(rows: Iterable[int]) -> list[int]:
        rows = list(rows)
        hits: set[int] = set()
        for part in parts:
            hits.update(part(rows))
        return [i for i in rows if i in hits]

    return run


def _complement(rows: Iterable[int], inner: Callable[[Iterable[int]], list[int]]) -> list[int]:
    rows = list(rows)
    excluded = set(inner(rows))
    return [i for i in rows if i not in excluded]


def _like_regex(pattern: str) -> re.Pattern[str]:
    """A case-insensitive regex for a LIKE pattern (``%``, ``_``, escaped ``\\%`` ``\\_``)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and pattern[i + 1 : i + 2] in ("%", "_"):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char.lower()))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def execute(query: Query, tables: Mapping[str, Table], api_version: float) -> QueryResult:
    """Run a parsed query; ``tables`` maps lower-case sObject names to tables."""
    return _Executor(query, tables, api_version).run()


def run_query(text: str, tables: Mapping[str, Table], api_version: float = 999.0) -> QueryResult:
    """Parse and run ``text`` in one step."""
    return execute(parse(text), tables, api_version)
