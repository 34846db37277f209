-- A document quarantined as `ins.unknown` usually only ran ahead of its patient's identity
-- message. The route stage re-routes such open cases by itself once the registry knows the
-- INS; this column (the case's patient INS) and the partial index find them without reading
-- payloads.
ALTER TABLE quarantine ADD COLUMN patient_ins TEXT;
UPDATE quarantine SET patient_ins = payload::json -> 'meta' -> 'patient' ->> 'ins'
    WHERE status = 'open' AND reason = 'ins.unknown';
CREATE INDEX quarantine_waiting_patient ON quarantine (patient_ins)
    WHERE status = 'open' AND reason = 'ins.unknown';
