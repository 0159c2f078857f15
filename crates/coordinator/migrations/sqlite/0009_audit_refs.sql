-- Each module's answer recorded with the entry of that module's audit trail that records it
-- (issue 13): `<seq>:<sha256 hex>`, shown with the job's events.
ALTER TABLE job_events ADD COLUMN audit TEXT;
