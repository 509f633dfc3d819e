-- The language of an account's emails, chosen from Accept-Language at
-- registration and used for every later code (resend, `user resend`).
-- NULL for accounts registered before it was kept: they get DEFAULT_LOCALE.
-- A language tag, lowercase (`fr`, `pt-br`); not a foreign key to anything:
-- a locale whose templates were removed falls back to DEFAULT_LOCALE.
ALTER TABLE users
    ADD COLUMN locale TEXT
        CHECK (locale ~ '^[a-z]{2,3}(-[a-z0-9]{1,8})*$' AND char_length(locale) <= 35);
