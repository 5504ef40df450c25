-- docker-compose only: the schema registry's database (`revloop infra up` makes it itself).
CREATE DATABASE revloop_registry;
