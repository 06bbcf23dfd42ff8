-- +goose Up
CREATE TABLE pingtable (
    name text NOT NULL
);
INSERT INTO pingtable (name) VALUES ('pong');

-- +goose Down
DROP TABLE pingtable;
