-- Background photo processing (`--photo-processing queue`): a photo is
-- `processing` from its upload until the worker has decoded, resized and
-- stored it, then `ready` (or `failed` if it was not a decodable image).
-- Feeds, explore and profiles show only ready photos. Existing rows, and
-- every photo processed in its request, are ready.
ALTER TABLE photos
    ADD COLUMN status TEXT NOT NULL DEFAULT 'ready'
        CHECK (status IN ('ready', 'processing', 'failed'));

-- The worker's sweep finds photos that are still processing (a job lost
-- with Redis, or a worker killed mid-job) without scanning every photo.
CREATE INDEX photos_processing ON photos (id) WHERE status = 'processing';
