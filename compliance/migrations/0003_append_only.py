"""PostgreSQL triggers that make the audit trail append-only (docs/audit.md).

Audit events: every UPDATE is refused except the one Django makes when a user or an
organisation is deleted (``actor_id`` / ``organization_id`` set to NULL, nothing else
touched: neither is part of the hash). Every DELETE is refused, except in a transaction
that declared itself the retention purge with ``SET LOCAL aqta.retention_purge = 'on'``
(``compliance.audit_retention``).

Chain heads: an append may only grow a head (a longer length, with its new last hash);
a head never shrinks, never changes its hash without growing, never changes its scope and
is never deleted. Its base (``base_sequence`` / ``base_hash``) moves only forward, only
within the retention purge.

Checkpoints: never changed, never deleted.

TRUNCATE of all three is refused unless the session set ``aqta.allow_truncate`` (the
test suite does), with ``aqta_refuse_truncate()`` of healthcare's migration 0002. Other
databases (the embedded SQLite) have no triggers.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION aqta_audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('aqta.retention_purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE of event % refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, NEW.chain_id, NEW.sequence, NEW.actor_label, NEW.action, NEW.target, NEW.ip,
        NEW.user_agent, NEW.data, NEW.created_at, NEW.prev_hash, NEW.hash)
       IS DISTINCT FROM
       (OLD.id, OLD.chain_id, OLD.sequence, OLD.actor_label, OLD.action, OLD.target, OLD.ip,
        OLD.user_agent, OLD.data, OLD.created_at, OLD.prev_hash, OLD.hash)
       OR (NEW.actor_id IS NOT NULL AND NEW.actor_id IS DISTINCT FROM OLD.actor_id)
       OR (NEW.organization_id IS NOT NULL
           AND NEW.organization_id IS DISTINCT FROM OLD.organization_id) THEN
        RAISE EXCEPTION 'audit events are append-only: UPDATE of event % refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER aqta_audit_event_append_only
    BEFORE UPDATE OR DELETE ON compliance_auditevent
    FOR EACH ROW EXECUTE FUNCTION aqta_audit_event_guard();

CREATE TRIGGER aqta_audit_event_no_truncate
    BEFORE TRUNCATE ON compliance_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION aqta_refuse_truncate();

CREATE OR REPLACE FUNCTION aqta_audit_chain_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit chain heads are never deleted (chain %)', OLD.scope
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.scope IS DISTINCT FROM OLD.scope THEN
        RAISE EXCEPTION 'audit chain % keeps its id and scope', OLD.scope
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.length < OLD.length THEN
        RAISE EXCEPTION 'audit chain % only grows: length % to % refused',
            OLD.scope, OLD.length, NEW.length
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.length = OLD.length AND NEW.last_hash IS DISTINCT FROM OLD.last_hash THEN
        RAISE EXCEPTION 'audit chain %: the last hash changes only with an append', OLD.scope
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.base_sequence, NEW.base_hash) IS DISTINCT FROM (OLD.base_sequence, OLD.base_hash)
       AND (current_setting('aqta.retention_purge', true) IS DISTINCT FROM 'on'
            OR NEW.base_sequence <= OLD.base_sequence
            OR NEW.base_sequence > NEW.length) THEN
        RAISE EXCEPTION 'audit chain %: the base moves only forward, in the retention purge',
            OLD.scope
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER aqta_audit_chain_grow_only
    BEFORE UPDATE OR DELETE ON compliance_auditchain
    FOR EACH ROW EXECUTE FUNCTION aqta_audit_chain_guard();

CREATE TRIGGER aqta_audit_chain_no_truncate
    BEFORE TRUNCATE ON compliance_auditchain
    FOR EACH STATEMENT EXECUTE FUNCTION aqta_refuse_truncate();

CREATE OR REPLACE FUNCTION aqta_checkpoint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'chain checkpoints are never changed or deleted (checkpoint %)', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER aqta_checkpoint_append_only
    BEFORE UPDATE OR DELETE ON compliance_chaincheckpoint
    FOR EACH ROW EXECUTE FUNCTION aqta_checkpoint_guard();

CREATE TRIGGER aqta_checkpoint_no_truncate
    BEFORE TRUNCATE ON compliance_chaincheckpoint
    FOR EACH STATEMENT EXECUTE FUNCTION aqta_refuse_truncate();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS aqta_audit_event_append_only ON compliance_auditevent;
DROP TRIGGER IF EXISTS aqta_audit_event_no_truncate ON compliance_auditevent;
DROP TRIGGER IF EXISTS aqta_audit_chain_grow_only ON compliance_auditchain;
DROP TRIGGER IF EXISTS aqta_audit_chain_no_truncate ON compliance_auditchain;
DROP TRIGGER IF EXISTS aqta_checkpoint_append_only ON compliance_chaincheckpoint;
DROP TRIGGER IF EXISTS aqta_checkpoint_no_truncate ON compliance_chaincheckpoint;
DROP FUNCTION IF EXISTS aqta_audit_event_guard();
DROP FUNCTION IF EXISTS aqta_audit_chain_guard();
DROP FUNCTION IF EXISTS aqta_checkpoint_guard();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0002_chain_base_checkpoints"),
        # aqta_refuse_truncate() is defined there.
        ("healthcare", "0002_append_only"),
    ]

    operations = [migrations.RunPython(forward, backward)]
