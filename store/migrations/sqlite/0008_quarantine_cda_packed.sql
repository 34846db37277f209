-- A quarantined document keeps its CDA as normalize packed it (zstd, once): the bytes go
-- here, the payload JSON keeps the document's head ("cda" empty, "packed" with the hash and
-- size), and a release files those bytes as they are instead of inflating the CDA into the
-- JSON and packing it again. NULL for an XML body kept inline in the payload: every row of
-- earlier builds, which is released as before (packed once, when filed).
ALTER TABLE quarantine ADD COLUMN cda_packed BLOB;
