-- Claims: a caller's write sent in the same statement as an append (eventstore.types.Claim).
-- When the claim writes nothing, this function is called to raise: the error aborts the
-- statement, and the append with it, whatever the statement had already inserted. The
-- SQLSTATE is the store's own, so the client can tell this refusal from any other error.
CREATE FUNCTION eventstore.refuse_claim(p_stream_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the claim sent with the append to % was refused', p_stream_id
        USING ERRCODE = 'ES409';
END;
$$;
