"""Staff management: a branch's users listed, disabled, given another role, deleted.

The administrator may change any user's role and whether they are active; a manager may
disable, enable or delete the customers of their own branch. Another branch's user is answered
like a missing one. Every change that takes rights away ends the user's sessions at once.
"""

from apiflask import APIBlueprint, Schema, abort, fields, validators
from marshmallow import ValidationError, validates_schema

from .. import accounts
from ..access import InBranch, get_branch, get_user, manager_or_admin, users
from ..extensions import db
from ..models import ROLES, User
from ..parsing import JsonParser, QueryParser
from ..schemas import MAX_ID, PageQuery, StrictBoolean, page_of

bp = APIBlueprint("users", __name__, tag="Staff")

staff_manager = manager_or_admin("Only a manager or the administrator may manage users")


class UserOut(Schema):
    id = fields.Integer()
    username = fields.String()
    role = fields.String()
    branch_id = fields.Integer()
    active = fields.Boolean()
    created_at = fields.DateTime()


class UserPageOut(Schema):
    users = fields.List(fields.Nested(UserOut))
    next_cursor = fields.String(allow_none=True)


class UsersQuery(PageQuery):
    # Not strict: a query string's values are text.
    branch_id = fields.Integer(
        validate=validators.Range(min=1, max=MAX_ID),
        metadata={"description": "Required for the administrator; a manager's own branch."},
    )


class UserPatchIn(Schema):
    role = fields.String(validate=validators.OneOf(ROLES), metadata={"description": "Administrator only."})
    active = StrictBoolean()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Give at least one of role, active.", "_schema")


def managed_user(scope, user_id: int) -> User:
    """The user the caller may change: a manager changes their own branch's customers only."""
    user = get_user(user_id, scope)
    if isinstance(scope, InBranch) and user.role != "customer":
        abort(403, "Managers may change customers only")
    return user


@bp.get("/users")
@staff_manager
@QueryParser(UsersQuery).input(bp)
@bp.output(UserPageOut)
@bp.doc(responses={401: "Not logged in", 403: "A customer, or another branch", 404: "Branch not found"})
def list_users(scope, query_data):
    """The users of a branch, by id: the manager's own, or the one the administrator names."""
    wanted, limit, after = query_data.get("branch_id"), query_data["limit"], query_data["cursor"]
    if isinstance(scope, InBranch):
        if wanted not in (None, scope.branch_id):
            abort(403, "Managers see their own branch's users only")
    elif wanted is None:
        abort(422, "Validation error", {"branch_id": ["Required for the administrator."]})
    else:
        scope = InBranch(get_branch(wanted).id)
    query = users(scope).order_by(User.id).limit(limit + 1)
    if after is not None:
        query = query.where(User.id > after)
    page, next_cursor = page_of(db.session.scalars(query).all(), limit)
    return {"users": page, "next_cursor": next_cursor}


@bp.patch("/users/<int:user_id>")
@staff_manager
@JsonParser(UserPatchIn).input(bp)
@bp.output(UserOut)
@bp.doc(responses={401: "Not logged in", 403: "Not a change the caller may make", 404: "User not found"})
def update_user(scope, user_id, json_data):
    """Disable or enable a user, or (the administrator) give them another role."""
    if isinstance(scope, InBranch) and "role" in json_data:
        abort(403, "Only the administrator may change a role")
    user = managed_user(scope, user_id)
    accounts.change(user, role=json_data.get("role"), active=json_data.get("active"))
    return user


@bp.delete("/users/<int:user_id>")
@staff_manager
@bp.output({}, status_code=204)
@bp.doc(responses={401: "Not logged in", 403: "Not a user the caller may delete", 404: "User not found"})
def delete_user(scope, user_id):
    """Delete a user: they can no longer log in, and their purchases stay theirs."""
    accounts.delete(managed_user(scope, user_id))
    return ""
