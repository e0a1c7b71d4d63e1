-- Swap the result built by sessionize.sql into place. Run in one transaction: readers see the previous
-- tables or the new ones, never a mix, and wait at most for the renames, not for the build.

-- The new tables take the grants of the ones they replace (an analyst's role granted SELECT keeps it; a new
-- table has only its owner's and the default privileges). Table-level grants, re-granted by the owner.
DO $$
DECLARE
    kept record;
BEGIN
    FOR kept IN
        SELECT pair.next, acl.privilege_type, acl.is_grantable,
               CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(acl.grantee)) END AS grantee
        FROM (VALUES ('tb_events', 'tb_events_next'), ('sessions', 'sessions_next')) AS pair (published, next)
        JOIN pg_class c ON c.oid = to_regclass(pair.published)
        CROSS JOIN LATERAL aclexplode(c.relacl) AS acl
        WHERE acl.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON %I TO %s%s', kept.privilege_type, kept.next, kept.grantee,
                       CASE WHEN kept.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

ALTER TABLE tb_events RENAME TO tb_events_old;
ALTER TABLE tb_events_next RENAME TO tb_events;
DROP TABLE tb_events_old;
ALTER INDEX tb_events_next_pkey RENAME TO tb_events_pkey;

ALTER TABLE sessions RENAME TO sessions_old;
ALTER TABLE sessions_next RENAME TO sessions;
DROP TABLE sessions_old;
ALTER INDEX sessions_next_pkey RENAME TO sessions_pkey;
