-- Every call of the FHIR server leaves a trace (issue #13), not only those of an
-- authenticated caller about a known patient: an unauthenticated call is traced with the
-- role 'anonymous' (actor_id and patient_ins empty: nothing in it can be attributed), a call
-- whose patient is unknown (bad query, missing document) with patient_ins ''. A document
-- provided over ITI-65 is traced with action 'create'. Kept parallel with
-- ../sqlite/0010_access_trace_every_call.sql.
ALTER TABLE access_trace DROP CONSTRAINT access_trace_actor_role_check;
ALTER TABLE access_trace ADD CONSTRAINT access_trace_actor_role_check
    CHECK (actor_role IN ('patient', 'representative', 'professional', 'anonymous'));
ALTER TABLE access_trace DROP CONSTRAINT access_trace_action_check;
ALTER TABLE access_trace ADD CONSTRAINT access_trace_action_check
    CHECK (action IN ('search', 'read', 'create'));
