"""The labels blueprint: the taxonomy contributions must use, and crisis incidents.

Every member may read the taxonomy (it says what a contribution may be labelled);
admins add labels, edit their description, and deprecate them (a label is never
deleted: stored hashes keep naming it). Admins open and close crisis incidents:
contributions labelled `crisis_incident:<id>` of an open incident go live at once.
The use cases (`Consortium.labels`, `Consortium.incidents`) audit these writes
themselves.
"""

from __future__ import annotations

from flask import Blueprint, Response

from api import schemas_workflow as w
from api.auth import requires
from api.context import context
from api.openapi import document
from api.request_id import actor
from api.schemas import PageArgs
from api.web import json_body, optional_json_body, query_args, reply, reply_page
from hashdb.consortium import Role
from hashdb.consortium.incidents import Incident
from hashdb.consortium.labels import Label, ValueKind

bp = Blueprint("labels", __name__)

TAG = "labels and incidents"


def label_out(label: Label) -> w.LabelOut:
    return w.LabelOut(
        name=label.name,
        description=label.description,
        value_kind=label.value_kind.value,
        created_at=label.created_at,
        deprecated_at=label.deprecated_at,
    )


def incident_out(i: Incident) -> w.IncidentOut:
    return w.IncidentOut(
        id=i.id,
        name=i.name,
        description=i.description,
        started_at=i.started_at,
        ended_at=i.ended_at,
        open=i.open,
        opened_by=i.opened_by,
        closed_by=i.closed_by,
    )


@bp.get("/v1/labels")
@document(
    "The label taxonomy",
    tag=TAG,
    description="In creation order, a page at a time; the cursor is a position.",
    query=PageArgs,
    responses={200: w.LabelList},
)
@requires(Role.MEMBER, Role.OPS)
def list_labels() -> Response:
    args = query_args(PageArgs)
    found = context().db.labels.page(after=args.position, limit=args.limit)
    body = w.LabelList(
        labels=[label_out(x) for x in found.items], cursor=found.cursor, more=found.more
    )
    return reply_page(body, args)


@bp.post("/v1/labels")
@document(
    "Add a label",
    tag=TAG,
    body=w.LabelIn,
    responses={201: w.LabelOut},
    errors={409: "A label of that name exists."},
)
@requires(Role.ADMIN)
def add_label() -> Response:
    body = json_body(w.LabelIn)
    label = context().db.labels.add(
        actor(), body.name, body.description, ValueKind(body.value_kind)
    )
    return reply(label_out(label), 201)


@bp.patch("/v1/labels/<name>")
@document(
    "Edit or deprecate a label",
    tag=TAG,
    description="Change the description, or deprecate (`deprecated: true`) so that new "
    "contributions may not use it; hashes already labelled keep it.",
    body=w.LabelEdit,
    responses={200: w.LabelOut},
)
@requires(Role.ADMIN)
def edit_label(name: str) -> Response:
    body = json_body(w.LabelEdit)
    label = context().db.labels.edit(
        actor(),
        name,
        description=body.description,
        deprecated=body.deprecated,
    )
    return reply(label_out(label))


@bp.get("/v1/incidents")
@document(
    "Crisis incidents",
    tag=TAG,
    description="By id (the order they were opened in), a page at a time.",
    query=PageArgs,
    responses={200: w.IncidentList},
)
@requires(Role.ADMIN)
def list_incidents() -> Response:
    args = query_args(PageArgs)
    found = context().db.incidents.page(actor(), after=args.position, limit=args.limit)
    body = w.IncidentList(
        incidents=[incident_out(i) for i in found.items], cursor=found.cursor, more=found.more
    )
    return reply_page(body, args)


@bp.post("/v1/incidents")
@document(
    "Open a crisis incident",
    tag=TAG,
    description="Contributions labelled `crisis_incident:<id>` go live while it is open.",
    body=w.IncidentIn,
    responses={201: w.IncidentOut},
)
@requires(Role.ADMIN)
def open_incident() -> Response:
    body = json_body(w.IncidentIn)
    incident = context().db.incidents.open(
        actor(),
        body.name,
        started_at=body.started_at,
        description=body.description,
    )
    return reply(incident_out(incident), 201)


@bp.post("/v1/incidents/<id:incident_id>/close")
@document(
    "Close a crisis incident",
    tag=TAG,
    description="The body is optional: without `ended_at` it ends now.",
    body=w.IncidentClose,
    body_required=False,
    responses={200: w.IncidentOut},
    errors={409: "The incident is already closed."},
)
@requires(Role.ADMIN)
def close_incident(incident_id: int) -> Response:
    body = optional_json_body(w.IncidentClose)
    incident = context().db.incidents.close(
        actor(), incident_id, ended_at=body.ended_at if body else None
    )
    return reply(incident_out(incident))
