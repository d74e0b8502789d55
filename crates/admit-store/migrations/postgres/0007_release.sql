-- Part of 0001 on PostgreSQL: this dialect began at schema version 10.
SELECT 1;
