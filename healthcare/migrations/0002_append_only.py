"""PostgreSQL triggers that make receipts and the issuer's key list append-only.

A receipt row may be changed in exactly two ways: linking it into its chain once
(``sequence``, ``prev_hash`` and ``chain_hash`` from empty to set) and marking it high-risk
(false to true). Everything else, every DELETE and TRUNCATE, is refused, except a DELETE
in a transaction that declared itself the retention purge with
``SET LOCAL aqta.retention_purge = 'on'`` (``healthcare.chain.receipts_purge``).
TRUNCATE is refused unless the session set ``aqta.allow_truncate`` (the test suite does,
to empty its database between tests).
A key may only be retired once. Other databases (the embedded SQLite) have no triggers.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION aqta_receipt_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('aqta.retention_purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'receipts are append-only: DELETE of receipt % refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, NEW.organization_id, NEW.attestation_id, NEW.trace_id, NEW.api_key_id,
        NEW.model, NEW.outcome, NEW.issued_at, NEW.key_id, NEW.document)
       IS DISTINCT FROM
       (OLD.id, OLD.organization_id, OLD.attestation_id, OLD.trace_id, OLD.api_key_id,
        OLD.model, OLD.outcome, OLD.issued_at, OLD.key_id, OLD.document) THEN
        RAISE EXCEPTION 'receipts are append-only: UPDATE of receipt % refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.sequence IS NOT NULL AND (NEW.sequence, NEW.prev_hash, NEW.chain_hash)
       IS DISTINCT FROM (OLD.sequence, OLD.prev_hash, OLD.chain_hash) THEN
        RAISE EXCEPTION 'receipt % is already linked into its chain', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.high_risk AND NOT NEW.high_risk THEN
        RAISE EXCEPTION 'receipt % stays high-risk', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER aqta_receipt_append_only
    BEFORE UPDATE OR DELETE ON healthcare_receipt
    FOR EACH ROW EXECUTE FUNCTION aqta_receipt_guard();

CREATE OR REPLACE FUNCTION aqta_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('aqta.allow_truncate', true) = 'on' THEN  -- test databases only
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER aqta_receipt_no_truncate
    BEFORE TRUNCATE ON healthcare_receipt
    FOR EACH STATEMENT EXECUTE FUNCTION aqta_refuse_truncate();

CREATE OR REPLACE FUNCTION aqta_receipt_key_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'issuer keys are never deleted (key %)', OLD.key_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.key_id, NEW.public_key, NEW.algorithm, NEW.activated_at)
       IS DISTINCT FROM (OLD.key_id, OLD.public_key, OLD.algorithm, OLD.activated_at)
       OR (OLD.retired_at IS NOT NULL AND NEW.retired_at IS DISTINCT FROM OLD.retired_at) THEN
        RAISE EXCEPTION 'issuer key % may only be retired, once', OLD.key_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER aqta_receipt_key_append_only
    BEFORE UPDATE OR DELETE ON healthcare_receiptkey
    FOR EACH ROW EXECUTE FUNCTION aqta_receipt_key_guard();

CREATE TRIGGER aqta_receipt_key_no_truncate
    BEFORE TRUNCATE ON healthcare_receiptkey
    FOR EACH STATEMENT EXECUTE FUNCTION aqta_refuse_truncate();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS aqta_receipt_append_only ON healthcare_receipt;
DROP TRIGGER IF EXISTS aqta_receipt_no_truncate ON healthcare_receipt;
DROP TRIGGER IF EXISTS aqta_receipt_key_append_only ON healthcare_receiptkey;
DROP TRIGGER IF EXISTS aqta_receipt_key_no_truncate ON healthcare_receiptkey;
DROP FUNCTION IF EXISTS aqta_receipt_guard();
DROP FUNCTION IF EXISTS aqta_receipt_key_guard();
DROP FUNCTION IF EXISTS aqta_refuse_truncate();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("healthcare", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
