"""Property definitions: HubSpot's default properties per object, custom properties, and the
validation of written values (fact sheet §7 and DOC-OBJ's error example)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ApiError, PropertyProblem, validation_error
from .objects import OBJECT_TYPES, ObjectType
from .values import date_from_ms, is_midnight, iso_from_ms, parse_instant_ms, parse_number


@dataclass(frozen=True)
class Option:
    label: str
    value: str
    display_order: int = 0
    hidden: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "displayOrder": self.display_order,
            "hidden": self.hidden,
        }


@dataclass(frozen=True)
class PropertyDef:
    name: str
    label: str
    type: str  # bool | enumeration | date | datetime | string | number | phone_number
    field_type: str
    group_name: str
    description: str = ""
    options: tuple[Option, ...] = ()
    has_unique_value: bool = False
    read_only: bool = False  # modificationMetadata.readOnlyValue
    calculated: bool = False
    # pipeline / dealstage: the valid values live in the pipelines, not in `options`.
    external_options: bool = False
    hubspot_defined: bool = True
    display_order: int = -1
    created_ms: int = 0
    referenced_object_type: str | None = None  # "OWNER" for owner pickers

    def to_json(self, options: Iterable[Option] | None = None) -> dict[str, Any]:
        opts = self.options if options is None else tuple(options)
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": [o.to_json() for o in opts],
            "displayOrder": self.display_order,
            "calculated": self.calculated,
            "externalOptions": self.external_options,
            "hasUniqueValue": self.has_unique_value,
            "hidden": False,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
            "formField": not self.read_only,
            "dataSensitivity": "non_sensitive",
            "createdAt": iso_from_ms(self.created_ms),
            "updatedAt": iso_from_ms(self.created_ms),
            "archived": False,
        }
        if self.hubspot_defined:
            out["hubspotDefined"] = True
        if self.referenced_object_type is not None:
            out["referencedObjectType"] = self.referenced_object_type
        return out


# Allowed type → fieldType pairs (fact sheet §7).
FIELD_TYPES: dict[str, frozenset[str]] = {
    "bool": frozenset({"booleancheckbox", "calculation_equation"}),
    "enumeration": frozenset(
        {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"}
    ),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date"}),
    "string": frozenset(
        {"text", "textarea", "file", "html", "phonenumber", "calculation_equation"}
    ),
    "number": frozenset({"number", "calculation_equation"}),
    "phone_number": frozenset({"phonenumber"}),
}
MAX_UNIQUE_PER_OBJECT = 10  # fact sheet §7
MAX_STRING_LENGTH = 65_536

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _opts(*pairs: tuple[str, str]) -> tuple[Option, ...]:
    return tuple(Option(label, value, i) for i, (label, value) in enumerate(pairs))


_LIFECYCLE = _opts(
    ("Subscriber", "subscriber"),
    ("Lead", "lead"),
    ("Marketing Qualified Lead", "marketingqualifiedlead"),
    ("Sales Qualified Lead", "salesqualifiedlead"),
    ("Opportunity", "opportunity"),
    ("Customer", "customer"),
    ("Evangelist", "evangelist"),
    ("Other", "other"),
)


def _text(
    name: str, label: str, group: str, *, field_type: str = "text", read_only: bool = False
) -> PropertyDef:
    return PropertyDef(name, label, "string", field_type, group, read_only=read_only)


def _system(obj: ObjectType, group: str) -> list[PropertyDef]:
    lm_label = "Last Modified Date"
    return [
        PropertyDef("createdate", "Create Date", "datetime", "date", group, read_only=True),
        PropertyDef(obj.last_modified, lm_label, "datetime", "date", group, read_only=True),
        PropertyDef("hs_object_id", "Record ID", "number", "number", group, read_only=True),
    ]


def _defaults(obj: ObjectType) -> list[PropertyDef]:
    if obj.name == "contacts":
        g = "contactinformation"
        props = [
            # Email uniqueness is enforced by the contacts store itself; the property is not
            # one of the `hasUniqueValue` custom identifiers.
            _text("email", "Email", g),
            _text("firstname", "First Name", g),
            _text("lastname", "Last Name", g),
            _text("phone", "Phone Number", g, field_type="phonenumber"),
            _text("mobilephone", "Mobile Phone Number", g, field_type="phonenumber"),
            _text("fax", "Fax Number", g),
            _text("company", "Company Name", g),
            _text("website", "Website URL", g),
            _text("jobtitle", "Job Title", g),
            _text("address", "Street Address", g),
            _text("city", "City", g),
            _text("state", "State/Region", g),
            _text("zip", "Postal Code", g),
            _text("country", "Country/Region", g),
            _text(
                "hs_additional_emails",
                "Additional email addresses",
                g,
                field_type="textarea",
                read_only=True,
            ),
            PropertyDef(
                "lifecyclestage", "Lifecycle Stage", "enumeration", "radio", g, options=_LIFECYCLE
            ),
            PropertyDef(
                "hs_lead_status",
                "Lead Status",
                "enumeration",
                "radio",
                g,
                options=_opts(
                    ("New", "NEW"),
                    ("Open", "OPEN"),
                    ("In Progress", "IN_PROGRESS"),
                    ("Open Deal", "OPEN_DEAL"),
                    ("Unqualified", "UNQUALIFIED"),
                    ("Attempted to Contact", "ATTEMPTED_TO_CONTACT"),
                    ("Connected", "CONNECTED"),
                    ("Bad Timing", "BAD_TIMING"),
                ),
            ),
            PropertyDef("date_of_birth", "Date of birth", "date", "date", g),
        ]
    elif obj.name == "companies":
        g = "companyinformation"
        props = [
            _text("name", "Company name", g),
            _text("domain", "Company Domain Name", g),
            _text("website", "Website URL", g),
            _text("phone", "Phone Number", g, field_type="phonenumber"),
            _text("city", "City", g),
            _text("state", "State/Region", g),
            _text("country", "Country/Region", g),
            _text("description", "Description", g, field_type="textarea"),
            PropertyDef(
                "industry",
                "Industry",
                "enumeration",
                "select",
                g,
                options=_opts(
                    ("Computer Software", "COMPUTER_SOFTWARE"),
                    ("Information Technology and Services", "INFORMATION_TECHNOLOGY_AND_SERVICES"),
                    ("Marketing and Advertising", "MARKETING_AND_ADVERTISING"),
                    ("Financial Services", "FINANCIAL_SERVICES"),
                    ("Hospital & Health Care", "HOSPITAL_HEALTH_CARE"),
                    ("Retail", "RETAIL"),
                    ("Construction", "CONSTRUCTION"),
                    ("Logistics and Supply Chain", "LOGISTICS_AND_SUPPLY_CHAIN"),
                ),
            ),
            PropertyDef("numberofemployees", "Number of Employees", "number", "number", g),
            PropertyDef("annualrevenue", "Annual Revenue", "number", "number", g),
            PropertyDef(
                "lifecyclestage", "Lifecycle Stage", "enumeration", "radio", g, options=_LIFECYCLE
            ),
        ]
    elif obj.name == "deals":
        g = "dealinformation"
        props = [
            _text("dealname", "Deal Name", g),
            PropertyDef("amount", "Amount", "number", "number", g),
            PropertyDef("closedate", "Close Date", "datetime", "date", g),
            PropertyDef("pipeline", "Pipeline", "enumeration", "select", g, external_options=True),
            PropertyDef(
                "dealstage", "Deal Stage", "enumeration", "radio", g, external_options=True
            ),
            PropertyDef(
                "dealtype",
                "Deal Type",
                "enumeration",
                "radio",
                g,
                options=_opts(
                    ("New Business", "newbusiness"), ("Existing Business", "existingbusiness")
                ),
            ),
            PropertyDef(
                "hs_priority",
                "Priority",
                "enumeration",
                "radio",
                g,
                options=_opts(("Low", "low"), ("Medium", "medium"), ("High", "high")),
            ),
            _text("description", "Deal Description", g, field_type="textarea"),
        ]
    elif obj.name == "invoices":
        g = "invoiceinformation"
        props = [
            PropertyDef(
                "hs_currency",
                "Currency",
                "enumeration",
                "select",
                g,
                options=_opts(
                    ("US Dollar", "USD"),
                    ("Euro", "EUR"),
                    ("British Pound", "GBP"),
                    ("Canadian Dollar", "CAD"),
                    ("Australian Dollar", "AUD"),
                    ("Japanese Yen", "JPY"),
                ),
            ),
            PropertyDef(
                "hs_invoice_status",
                "Invoice status",
                "enumeration",
                "select",
                g,
                options=_opts(
                    ("Draft", "draft"), ("Open", "open"), ("Paid", "paid"), ("Voided", "voided")
                ),
            ),
            PropertyDef("hs_due_date", "Due date", "date", "date", g),
            PropertyDef("hs_invoice_date", "Invoice date", "date", "date", g),
            _text("hs_title", "Title", g),
            _text("hs_number", "Number", g, read_only=True),
            _text("hs_purchase_order_number", "Purchase order number", g),
            _text("hs_comments", "Comments", g, field_type="textarea"),
            PropertyDef(
                "hs_amount_billed",
                "Amount billed",
                "number",
                "number",
                g,
                read_only=True,
                calculated=True,
            ),
        ]
    elif obj.name == "line_items":
        g = "lineiteminformation"
        props = [
            _text("name", "Name", g),
            _text("description", "Description", g, field_type="textarea"),
            PropertyDef("quantity", "Quantity", "number", "number", g),
            PropertyDef("price", "Unit price", "number", "number", g),
            # price × quantity − discount, computed by HubSpot.
            PropertyDef(
                "amount", "Net price", "number", "number", g, read_only=True, calculated=True
            ),
            PropertyDef("discount", "Unit discount", "number", "number", g),
            _text("hs_sku", "SKU", g),
            _text("hs_product_id", "Product ID", g),
        ]
    else:
        g, props = _other_defaults(obj)
    if obj.name in _OWNED:
        props.append(_owner_property(g))
    props.extend(_system(obj, g))
    return [replace(p, display_order=i) for i, p in enumerate(props)]


# Records that have an owner: `hubspot_owner_id` holds an owner's `id` (hubspot-onboarding.md
# §4: "assign owners by setting hubspot_owner_id"); its options are the account's owners.
_OWNED = frozenset(
    {
        "contacts",
        "companies",
        "deals",
        "tickets",
        "calls",
        "communications",
        "emails",
        "meetings",
        "notes",
        "postal_mail",
        "tasks",
    }
)
OWNER_PROPERTY = "hubspot_owner_id"


def _owner_property(group: str) -> PropertyDef:
    # An owner-picker enumeration: externalOptions + referencedObjectType OWNER
    # (hubspot-onboarding.md §5).
    return PropertyDef(
        OWNER_PROPERTY,
        "Owner",
        "enumeration",
        "select",
        group,
        external_options=True,
        referenced_object_type="OWNER",
    )


def _other_defaults(obj: ObjectType) -> tuple[str, list[PropertyDef]]:
    """Standard properties of the object types without behaviour of their own [INF]: the fact
    sheets name the types (hubspot-onboarding.md §8) but not their properties; these are the
    names HubSpot's UI and docs use for each type's main fields."""

    def enum(name: str, label: str, group: str, *values: str) -> PropertyDef:
        options = _opts(*((v.replace("_", " ").title(), v) for v in values))
        return PropertyDef(name, label, "enumeration", "select", group, options=options)

    def when(name: str, label: str, group: str) -> PropertyDef:
        return PropertyDef(name, label, "datetime", "date", group)

    def number(name: str, label: str, group: str) -> PropertyDef:
        return PropertyDef(name, label, "number", "number", group)

    name = obj.name
    if name == "tickets":
        g = "ticketinformation"
        return g, [
            _text("subject", "Ticket name", g),
            _text("content", "Ticket description", g, field_type="textarea"),
            _text("hs_pipeline", "Pipeline", g),
            _text("hs_pipeline_stage", "Ticket status", g),
            enum("hs_ticket_priority", "Priority", g, "LOW", "MEDIUM", "HIGH", "URGENT"),
            enum("hs_ticket_category", "Category", g, "PRODUCT_ISSUE", "BILLING_ISSUE",
                 "FEATURE_REQUEST", "GENERAL_INQUIRY"),
        ]
    if name == "products":
        g = "productinformation"
        return g, [
            _text("name", "Name", g),
            _text("description", "Description", g, field_type="textarea"),
            number("price", "Unit price", g),
            _text("hs_sku", "SKU", g),
            number("hs_cost_of_goods_sold", "Unit cost", g),
            enum("recurringbillingfrequency", "Billing frequency", g, "monthly", "quarterly",
                 "annually"),
        ]
    if name == "quotes":
        g = "quoteinformation"
        return g, [
            _text("hs_title", "Quote name", g),
            PropertyDef("hs_expiration_date", "Expiration date", "date", "date", g),
            enum("hs_status", "Quote approval status", g, "DRAFT", "APPROVAL_NOT_NEEDED",
                 "PENDING_APPROVAL", "APPROVED", "REJECTED"),
            _text("hs_currency", "Currency", g),
            _text("hs_language", "Language", g),
        ]
    if name == "feedback_submissions":
        g = "feedbacksubmissioninformation"
        return g, [
            _text("hs_content", "Response", g, field_type="textarea"),
            _text("hs_survey_name", "Survey name", g, read_only=True),
            enum("hs_survey_type", "Survey type", g, "NPS", "CSAT", "CES", "CUSTOM"),
            number("hs_value", "Rating", g),
        ]
    if name == "goal_targets":
        g = "goalinformation"
        return g, [
            _text("hs_goal_name", "Goal name", g),
            number("hs_target_amount", "Target", g),
            when("hs_start_datetime", "Start date", g),
            when("hs_end_datetime", "End date", g),
        ]
    g = "engagement"
    body = {
        "calls": [
            _text("hs_call_title", "Call title", g),
            _text("hs_call_body", "Call notes", g, field_type="html"),
            number("hs_call_duration", "Call duration", g),
            enum("hs_call_direction", "Call direction", g, "INBOUND", "OUTBOUND"),
            enum("hs_call_status", "Call status", g, "BUSY", "CALLING_CRM_USER", "CANCELED",
                 "COMPLETED", "CONNECTING", "FAILED", "IN_PROGRESS", "NO_ANSWER", "QUEUED",
                 "RINGING"),
        ],
        "communications": [
            enum("hs_communication_channel_type", "Channel type", g, "SMS", "WHATS_APP",
                 "LINKEDIN_MESSAGE"),
            _text("hs_communication_logged_from", "Logged from", g),
            _text("hs_communication_body", "Body", g, field_type="html"),
        ],
        "emails": [
            _text("hs_email_subject", "Email subject", g),
            _text("hs_email_text", "Email body", g, field_type="textarea"),
            _text("hs_email_html", "Email HTML body", g, field_type="html"),
            enum("hs_email_direction", "Email direction", g, "EMAIL", "INCOMING_EMAIL",
                 "FORWARDED_EMAIL"),
            enum("hs_email_status", "Email send status", g, "BOUNCED", "FAILED", "SCHEDULED",
                 "SENDING", "SENT"),
        ],
        "meetings": [
            _text("hs_meeting_title", "Meeting name", g),
            _text("hs_meeting_body", "Meeting description", g, field_type="html"),
            when("hs_meeting_start_time", "Start time", g),
            when("hs_meeting_end_time", "End time", g),
            enum("hs_meeting_outcome", "Meeting outcome", g, "SCHEDULED", "COMPLETED",
                 "RESCHEDULED", "NO_SHOW", "CANCELED"),
            _text("hs_meeting_location", "Location", g),
        ],
        "notes": [_text("hs_note_body", "Note body", g, field_type="html")],
        "postal_mail": [_text("hs_postal_mail_body", "Postal mail body", g, field_type="html")],
        "tasks": [
            _text("hs_task_subject", "Task title", g),
            _text("hs_task_body", "Notes", g, field_type="html"),
            enum("hs_task_status", "Task status", g, "NOT_STARTED", "IN_PROGRESS", "WAITING",
                 "COMPLETED", "DEFERRED"),
            enum("hs_task_priority", "Priority", g, "NONE", "LOW", "MEDIUM", "HIGH"),
            enum("hs_task_type", "Task type", g, "CALL", "EMAIL", "LINKED_IN", "MEETING", "TODO"),
        ],
    }[name]
    # Every engagement has the moment it happened (required in HubSpot's UI, not enforced here).
    return g, [when("hs_timestamp", "Activity date", g), *body]


@dataclass
class PropertyRegistry:
    """Every object type's properties: the defaults plus those created through the API.

    `dynamic_options(object_name, property_name)` supplies the options of externally defined
    enumerations (deal pipeline and stage) when the properties API lists them."""

    dynamic_options: Callable[[str, str], list[Option] | None]
    _by_object: dict[str, dict[str, PropertyDef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._by_object = {o.name: {p.name: p for p in _defaults(o)} for o in OBJECT_TYPES}

    def get(self, obj: ObjectType, name: str) -> PropertyDef | None:
        return self._by_object[obj.name].get(name)

    def all(self, obj: ObjectType) -> list[PropertyDef]:
        return list(self._by_object[obj.name].values())

    def custom(self) -> dict[str, list[PropertyDef]]:
        return {
            obj: [p for p in props.values() if not p.hubspot_defined]
            for obj, props in self._by_object.items()
        }

    def unique_names(self, obj: ObjectType) -> list[str]:
        return [p.name for p in self._by_object[obj.name].values() if p.has_unique_value]

    def to_json(self, obj: ObjectType, prop: PropertyDef) -> dict[str, Any]:
        return prop.to_json(
            self.dynamic_options(obj.name, prop.name) if prop.external_options else None
        )

    def create(self, obj: ObjectType, body: Any, now_ms: int) -> PropertyDef:
        """A custom property from a `POST /crm/v3/properties/{objectType}` body."""
        if not isinstance(body, dict):
            raise validation_error("Invalid input JSON: expected an object")
        missing = [
            k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)
        ]
        if missing:
            raise validation_error(f"Missing required fields: {', '.join(missing)}")
        name, type_, field_type = str(body["name"]), str(body["type"]), str(body["fieldType"])
        if not _PROPERTY_NAME.match(name):
            raise validation_error(
                f"Property name '{name}' is invalid: use lowercase letters, digits and underscores"
            )
        if name in self._by_object[obj.name]:
            raise ApiError(409, "CONFLICT", f"Property named '{name}' already exists.")
        if field_type not in FIELD_TYPES.get(type_, frozenset()):
            raise validation_error(f"fieldType '{field_type}' is not valid for type '{type_}'")
        options: tuple[Option, ...] = ()
        if type_ == "enumeration":
            raw_options = body.get("options") or []
            if not isinstance(raw_options, list) or not raw_options:
                raise validation_error("Enumeration properties need at least one option")
            try:
                options = tuple(
                    Option(
                        str(o["label"]),
                        str(o["value"]),
                        int(o.get("displayOrder", i)),
                        bool(o.get("hidden", False)),
                    )
                    for i, o in enumerate(raw_options)
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise validation_error("Each option needs a label and a value") from exc
        unique = bool(body.get("hasUniqueValue", False))
        if unique and len(self.unique_names(obj)) >= MAX_UNIQUE_PER_OBJECT:
            raise validation_error(
                f"An object can have at most {MAX_UNIQUE_PER_OBJECT} unique value properties"
            )
        prop = PropertyDef(
            name=name,
            label=str(body["label"]),
            type=type_,
            field_type=field_type,
            group_name=str(body["groupName"]),
            description=str(body.get("description") or ""),
            options=options,
            has_unique_value=unique,
            hubspot_defined=False,
            display_order=int(body.get("displayOrder", -1)),
            created_ms=now_ms,
        )
        self._by_object[obj.name][name] = prop
        return prop

    def update(self, obj: ObjectType, name: str, body: Any) -> PropertyDef:
        prop = self._by_object[obj.name].get(name)
        if prop is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        if prop.hubspot_defined:
            raise validation_error(
                f"Property {name} is a HubSpot-defined property and cannot be changed"
            )
        if not isinstance(body, dict):
            raise validation_error("Invalid input JSON: expected an object")
        if "hasUniqueValue" in body and bool(body["hasUniqueValue"]) != prop.has_unique_value:
            # fact sheet §7: hasUniqueValue cannot be changed after creation.
            raise validation_error("hasUniqueValue cannot be changed after a property is created")
        changes: dict[str, Any] = {}
        if "label" in body:
            changes["label"] = str(body["label"])
        if "description" in body:
            changes["description"] = str(body["description"])
        if "options" in body and prop.type == "enumeration":
            changes["options"] = tuple(
                Option(
                    str(o["label"]),
                    str(o["value"]),
                    int(o.get("displayOrder", i)),
                    bool(o.get("hidden", False)),
                )
                for i, o in enumerate(body["options"])
            )
        updated = replace(prop, **changes)
        self._by_object[obj.name][name] = updated
        return updated

    def archive(self, obj: ObjectType, name: str) -> None:
        prop = self._by_object[obj.name].get(name)
        if prop is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        if prop.hubspot_defined:
            raise validation_error(
                f"Property {name} is a HubSpot-defined property and cannot be deleted"
            )
        del self._by_object[obj.name][name]


def check_value(
    obj: ObjectType, prop: PropertyDef | None, name: str, raw: Any
) -> str | PropertyProblem:
    """The stored form of a written value ("" clears), or the problem HubSpot would report.

    Externally defined enumerations (pipeline, dealstage) are checked by the caller, which knows
    the pipelines."""
    if prop is None:
        return PropertyProblem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
    if prop.read_only:
        return PropertyProblem(
            name, "READ_ONLY_VALUE", f"{name} is a read only property; its value cannot be set."
        )
    if raw is None:
        return ""
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, int | float | str):
        text = str(raw)
    else:
        return PropertyProblem(
            name, "INVALID_PROPERTY_VALUE", f"{raw!r} is not a valid value for {name}"
        )
    if text == "":
        return ""
    if len(text) > MAX_STRING_LENGTH:
        return PropertyProblem(
            name, "INVALID_STRING_LENGTH", f"{name} is longer than {MAX_STRING_LENGTH} characters"
        )
    if prop.type == "number":
        if parse_number(text) is None:
            return PropertyProblem(name, "INVALID_INTEGER", f"{text} is not a valid number")
        return text.strip()
    if prop.type == "bool":
        if text.lower() not in ("true", "false"):
            return PropertyProblem(name, "INVALID_BOOLEAN", f"{text} is not a valid boolean")
        return text.lower()
    if prop.type in ("date", "datetime"):
        ms = parse_instant_ms(text)
        if ms is None:
            return PropertyProblem(name, "INVALID_DATE", f"{text} is not a valid date")
        if prop.type == "date":
            if not is_midnight(ms):
                return PropertyProblem(
                    name,
                    "INVALID_DATE",
                    f"{text} is not a valid date: dates must be at midnight UTC",
                )
            return date_from_ms(ms)
        return iso_from_ms(ms)
    if prop.type == "enumeration" and not prop.external_options:
        allowed = [o.value for o in prop.options]
        chosen = text.split(";") if prop.field_type == "checkbox" else [text]
        for value in chosen:
            if value not in allowed:
                # Message as HubSpot words it (seen in gregorspan/csc-frodx#21:
                # "reports was not one of the allowed options: [PRODUCT_ISSUE, ...]").
                return PropertyProblem(
                    name,
                    "INVALID_OPTION",
                    f"{value} was not one of the allowed options: [{', '.join(allowed)}]",
                )
        return text
    if obj.name == "contacts" and name == "email" and not _EMAIL.match(text.strip()):
        return PropertyProblem(name, "INVALID_EMAIL", f"Email address {text} is invalid")
    return text
