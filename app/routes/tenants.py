"""Platform administration: tenants and their branches."""

from apiflask import APIBlueprint, Schema, abort, fields, validators
from sqlalchemy import select

from ..access import admin_required
from ..errors import commit_or_conflict
from ..extensions import db
from ..models import Branch, Tenant
from ..names import name_key
from ..parsing import JsonParser
from ..schemas import id_field, name_field

bp = APIBlueprint("tenants", __name__, tag="Administration")

DEFAULT_BRANCH = "main"


class TenantsIn(Schema):
    tenant_names = fields.List(name_field(), required=True, validate=validators.Length(min=1, max=100))


class BranchOut(Schema):
    id = fields.Integer()
    name = fields.String()


class TenantOut(Schema):
    id = fields.Integer()
    name = fields.String()
    branches = fields.List(fields.Nested(BranchOut))


class TenantsOut(Schema):
    message = fields.String()
    tenants = fields.List(fields.Nested(TenantOut))


class BranchIn(Schema):
    tenant_id = id_field(required=True)
    name = name_field(required=True)


class BranchCreatedOut(BranchOut):
    tenant_id = fields.Integer()


@bp.post("/register_tenants")
@admin_required
@JsonParser(TenantsIn).input(bp)
@bp.output(TenantsOut, status_code=201)
@bp.doc(responses={403: "Administrator token required", 409: "A tenant name is taken"})
def register_tenants(json_data):
    """Register tenants, each with a default branch named main."""
    names = json_data["tenant_names"]
    keys = [name_key(name) for name in names]
    if len(set(keys)) != len(keys):
        abort(409, "Tenant names repeat in the request")
    taken = db.session.scalars(select(Tenant.name).where(Tenant.name_key.in_(keys))).all()
    if taken:
        abort(409, f"Tenant name taken: {taken[0]}")
    tenants = [Tenant(name=name, branches=[Branch(name=DEFAULT_BRANCH)]) for name in names]
    db.session.add_all(tenants)
    commit_or_conflict("Tenant name taken")
    return {"message": "Tenants registered", "tenants": tenants}


@bp.post("/branches")
@admin_required
@JsonParser(BranchIn).input(bp)
@bp.output(BranchCreatedOut, status_code=201)
@bp.doc(responses={403: "Administrator token required", 404: "Tenant not found", 409: "Name taken"})
def create_branch(json_data):
    """Open a new branch for a tenant."""
    tenant = db.session.get(Tenant, json_data["tenant_id"])
    if tenant is None:
        abort(404, "Tenant not found")
    name = json_data["name"]
    taken = db.session.scalar(
        select(Branch.id).where(Branch.tenant_id == tenant.id, Branch.name_key == name_key(name))
    )
    if taken is not None:
        abort(409, "Branch name taken in this tenant")
    branch = Branch(tenant=tenant, name=name)
    db.session.add(branch)
    commit_or_conflict("Branch name taken in this tenant")
    return branch
