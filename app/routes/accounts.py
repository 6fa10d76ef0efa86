"""Registration, login, logout and the caller's own account."""

from apiflask import APIBlueprint, Schema, abort, fields, validators
from flask import session
from sqlalchemy import select

from ..access import (
    ADMINISTRATOR,
    ANYONE,
    Identity,
    declares,
    end_session,
    get_branch,
    is_admin,
    login_required,
    start_session,
)
from ..accounts import change_password, check_password, find_user, login_state, new_user, who_may_log_in
from ..errors import commit_or_conflict
from ..extensions import db
from ..models import ROLES, Branch, Tenant, User
from ..parsing import JsonParser
from ..redis.throttle import login_windows, registration_windows, throttle
from ..schemas import MessageOut, id_field, text_field

bp = APIBlueprint("accounts", __name__, tag="Accounts")

# (?!\n) because Python's $ also matches before a trailing newline ("alice\n" would pass).
USERNAME = validators.Regexp(r"^[A-Za-z0-9_.@-]{3,64}(?!\n)$", error="3 to 64 of A-Z a-z 0-9 _ . @ -")


class RegisterIn(Schema):
    username = fields.String(required=True, validate=USERNAME)
    password = text_field(8, 128, required=True)
    branch_id = id_field(required=True)
    role = fields.String(validate=validators.OneOf(ROLES), metadata={"description": "Administrator only."})


class RegisteredOut(Schema):
    message = fields.String()
    user_id = fields.Integer()


class LoginIn(Schema):
    username = text_field(1, 64, required=True)
    password = text_field(1, 128, required=True)


class LoginOut(Schema):
    message = fields.String()
    user_id = fields.Integer()
    branch_id = fields.Integer()


class MeOut(Schema):
    user_id = fields.Integer()
    username = fields.String()
    role = fields.String()
    branch_id = fields.Integer()
    branch_name = fields.String()
    tenant_id = fields.Integer()
    tenant_name = fields.String()


@bp.post("/register_user")
@declares(ANYONE, ADMINISTRATOR)
@JsonParser(RegisterIn).input(bp)
@bp.output(RegisteredOut, status_code=201)
@bp.doc(
    responses={
        403: "role given without the administrator token",
        404: "Branch not found",
        409: "Username taken",
        429: "Too many registrations from this address",
    }
)
def register_user(json_data):
    """Register a user in a branch; only the administrator may choose a role."""
    admin = is_admin()
    if "role" in json_data and not admin:
        abort(403, "Only the administrator may set a role")
    if not admin:
        throttle().check(registration_windows())
        throttle().count(registration_windows())
    branch = get_branch(json_data["branch_id"])
    if find_user(json_data["username"]) is not None:
        abort(409, "Username taken")
    user = new_user(json_data["username"], json_data["password"], branch, json_data.get("role", "customer"))
    db.session.add(user)
    commit_or_conflict("Username taken")
    return {"message": "User registered", "user_id": user.id}


@bp.post("/login")
@JsonParser(LoginIn).input(bp)
@bp.output(LoginOut)
@bp.doc(responses={401: "Invalid credentials", 429: "Too many failed logins"})
def login(json_data):
    """Log in: the session is replaced by a new one holding the user and branch."""
    windows = login_windows(json_data["username"])
    throttle().check(windows)
    user = who_may_log_in(find_user(json_data["username"]))
    if not check_password(user, json_data["password"]):
        throttle().count(windows)
        abort(401, "Invalid credentials")
    start_session(user.id, user.branch_id, user.branch.tenant_id, user.role)
    # A change committed while the password was being checked ended the user's sessions before
    # this one existed: the user is read again now that it does, and the new state wins.
    state = login_state(user.id)
    if state is None or not state[0]:
        end_session()
        abort(401, "Invalid credentials")
    session["role"] = state[1]
    return {"message": "Login successful", "user_id": user.id, "branch_id": user.branch_id}


@bp.post("/logout")
@bp.output(MessageOut)
def logout():
    """Log out: the server-side session is deleted."""
    end_session()
    return {"message": "Logged out"}


class PasswordIn(Schema):
    current_password = text_field(1, 128, required=True)
    new_password = text_field(8, 128, required=True)


@bp.post("/me/password")
@login_required
@JsonParser(PasswordIn).input(bp)
@bp.output(MessageOut)
@bp.doc(responses={401: "Not logged in, or the current password is wrong", 429: "Too many failed attempts"})
def change_my_password(identity: Identity, json_data):
    """Change the caller's password: every other session ends, and this one goes on under a new id."""
    user = db.session.get(User, identity.user_id)
    if user is None or not user.can_log_in:
        end_session()
        abort(401, "User not logged in")
    # A wrong current password counts like a failed login: a stolen session cannot guess it.
    windows = login_windows(user.username)
    throttle().check(windows)
    if not check_password(user, json_data["current_password"]):
        throttle().count(windows)
        abort(401, "Invalid credentials")
    change_password(user, json_data["new_password"], keep_sid=session.sid)
    start_session(user.id, user.branch_id, identity.tenant_id, user.role)
    return {"message": "Password changed"}


@bp.get("/me")
@login_required
@bp.output(MeOut)
@bp.doc(responses={401: "User not logged in"})
def me(identity: Identity):
    """The logged-in user, with their branch and tenant."""
    row = db.session.execute(
        select(User, Branch.name, Tenant.name)
        .join(User.branch)
        .join(Branch.tenant)
        .where(User.id == identity.user_id)
    ).one_or_none()
    if row is None or not row[0].can_log_in:
        # Sessions end with their user; one that outlived it (a restored database) ends here.
        end_session()
        abort(401, "User not logged in")
    user, branch_name, tenant_name = row
    return {
        "user_id": user.id,
        "username": user.username,
        "role": user.role,
        "branch_id": user.branch_id,
        "branch_name": branch_name,
        "tenant_id": identity.tenant_id,
        "tenant_name": tenant_name,
    }
