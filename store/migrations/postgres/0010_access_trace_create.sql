-- ITI-65 (a professional providing a document over FHIR) is traced too, as action 'create':
-- the patient reads who put what into their DMP next to who read it. Kept parallel with
-- ../sqlite/0010_access_trace_create.sql.
ALTER TABLE access_trace DROP CONSTRAINT access_trace_action_check;
ALTER TABLE access_trace ADD CONSTRAINT access_trace_action_check
    CHECK (action IN ('search', 'read', 'create'));
