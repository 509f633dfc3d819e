// @generated automatically by Diesel CLI.

diesel::table! {
    activation_codes (id) {
        id -> Int8,
        user_id -> Int8,
        code_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        superseded_at -> Nullable<Timestamptz>,
        claim_id -> Nullable<Int8>,
        inbox -> Nullable<Text>,
        digits -> Nullable<Int2>,
        sealed -> Nullable<Bytea>,
        shared -> Bool,
    }
}

diesel::table! {
    claims (id) {
        id -> Int8,
        user_id -> Int8,
        password_hash -> Text,
        locale -> Nullable<Text>,
        created_at -> Timestamptz,
        failed_activations -> Int4,
        network -> Text,
        ended_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    email_outbox (id) {
        id -> Int8,
        user_id -> Nullable<Int8>,
        recipient -> Text,
        status -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        last_status -> Nullable<Int4>,
        payload -> Nullable<Bytea>,
        kind -> Text,
        event_type -> Nullable<Text>,
        claim_id -> Nullable<Int8>,
        inbox -> Nullable<Text>,
        traceparent -> Nullable<Text>,
        tracestate -> Nullable<Text>,
    }
}

diesel::table! {
    secret_key_uses (fingerprint) {
        fingerprint -> Text,
        last_used_at -> Timestamptz,
    }
}

diesel::table! {
    service_keys (name) {
        name -> Text,
        sealed -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        email -> Text,
        password_hash -> Text,
        is_active -> Bool,
        created_at -> Timestamptz,
        activated_at -> Nullable<Timestamptz>,
        failed_activations -> Int4,
        locale -> Nullable<Text>,
    }
}

diesel::joinable!(activation_codes -> claims (claim_id));
diesel::joinable!(activation_codes -> users (user_id));
diesel::joinable!(claims -> users (user_id));
diesel::joinable!(email_outbox -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    activation_codes,
    claims,
    email_outbox,
    secret_key_uses,
    service_keys,
    users,
);
