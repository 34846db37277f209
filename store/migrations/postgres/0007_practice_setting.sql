-- The XDS practiceSettingCode of each document (JDV_J62: the TRE_A01 "cadre d'exercice",
-- AMBULATOIRE, ETABLISSEMENT ...), from the CDA header. NULL for rows of earlier builds and
-- for received documents that do not state it: dmpflow does not invent one.
ALTER TABLE documents ADD COLUMN practice_setting TEXT;
