-- Authority (issue 8): the admin-signed policies the coordinator relays to modules (it cannot
-- make or change one: modules check the admins' signatures themselves), the policy each
-- module reports in force, API token roles, the signed intent each sign job answers, and the
-- attempt counter that keeps every signing session id fresh across restarts.
CREATE TABLE policies (
    hash        TEXT PRIMARY KEY,                 -- hex policy hash
    version     INTEGER NOT NULL,
    document    TEXT NOT NULL,                    -- JSON of the signed policy (policy and signatures)
    status      TEXT NOT NULL,                    -- proposed | active | superseded
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX policies_by_version ON policies(version);

CREATE TABLE module_policies (
    module_id   TEXT PRIMARY KEY REFERENCES modules(id),
    policy_hash TEXT,                             -- hex hash of the policy in force (NULL: none)
    version     INTEGER NOT NULL,                 -- its version (0: none)
    offered     TEXT,                             -- hex hash of the last policy offered to it
    error       TEXT,                             -- why it did not adopt that one
    updated_at  TEXT NOT NULL
);

-- admin | operator | trader | viewer. Tokens made before roles existed were admin tokens.
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';

ALTER TABLE jobs ADD COLUMN intent BLOB;           -- JSON of the signed intent (sign and import jobs)
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
