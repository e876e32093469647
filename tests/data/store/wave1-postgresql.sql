-- vmfabric store schema version 1 (wave 1, commit a124027), postgresql DDL, frozen as
-- test data: generated once from that commit's src/vmfabric/store/schema.py.
-- Statements end with ';' on a line end.

CREATE TABLE audit_log (
	id SERIAL NOT NULL,
	time FLOAT NOT NULL,
	switch VARCHAR(255) NOT NULL,
	port VARCHAR(255) NOT NULL,
	vlan INTEGER NOT NULL,
	action VARCHAR(8) NOT NULL,
	reason TEXT NOT NULL,
	session VARCHAR(255) NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_audit_log_switch ON audit_log (switch, id);

CREATE TABLE host_nics (
	session VARCHAR(255) NOT NULL,
	host VARCHAR(255) NOT NULL,
	position INTEGER NOT NULL,
	nic VARCHAR(255) NOT NULL,
	protocol VARCHAR(8),
	system_name TEXT NOT NULL,
	port_id TEXT NOT NULL,
	chassis_id TEXT NOT NULL,
	mgmt_addr TEXT NOT NULL,
	port_descr TEXT NOT NULL,
	PRIMARY KEY (session, host, position)
);

CREATE TABLE host_uplinks (
	session VARCHAR(255) NOT NULL,
	host VARCHAR(255) NOT NULL,
	position INTEGER NOT NULL,
	nic VARCHAR(255) NOT NULL,
	switch VARCHAR(255) NOT NULL,
	port VARCHAR(255) NOT NULL,
	source VARCHAR(8) NOT NULL,
	PRIMARY KEY (session, host, position)
);

CREATE INDEX ix_host_uplinks_port ON host_uplinks (switch, port);

CREATE TABLE hosts (
	session VARCHAR(255) NOT NULL,
	name VARCHAR(255) NOT NULL,
	vswitch_nics JSON NOT NULL,
	PRIMARY KEY (session, name)
);

CREATE TABLE meta (
	key VARCHAR(64) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (key)
);

CREATE TABLE plans (
	id SERIAL NOT NULL,
	switch VARCHAR(255) NOT NULL,
	status VARCHAR(16) NOT NULL,
	created FLOAT NOT NULL,
	updated FLOAT NOT NULL,
	reason TEXT NOT NULL,
	sessions JSON NOT NULL,
	plan JSON NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_plans_status ON plans (status);

CREATE TABLE port_states (
	switch VARCHAR(255) NOT NULL,
	port VARCHAR(255) NOT NULL,
	mode VARCHAR(16) NOT NULL,
	vlans TEXT NOT NULL,
	dynamic TEXT NOT NULL,
	updated FLOAT NOT NULL,
	PRIMARY KEY (switch, port)
);

CREATE TABLE portgroups (
	session VARCHAR(255) NOT NULL,
	name VARCHAR(255) NOT NULL,
	vlans TEXT NOT NULL,
	vswitch VARCHAR(255) NOT NULL,
	problem TEXT NOT NULL,
	PRIMARY KEY (session, name)
);

CREATE TABLE sessions (
	name VARCHAR(255) NOT NULL,
	kind VARCHAR(32) NOT NULL,
	url TEXT NOT NULL,
	autovlan BOOLEAN NOT NULL,
	allowed_vlans TEXT NOT NULL,
	mode VARCHAR(16) NOT NULL,
	state VARCHAR(16) NOT NULL,
	in_sync BOOLEAN NOT NULL,
	error TEXT NOT NULL,
	version TEXT NOT NULL,
	warnings JSON NOT NULL,
	last_update FLOAT,
	PRIMARY KEY (name)
);

CREATE TABLE switches (
	name VARCHAR(255) NOT NULL,
	state VARCHAR(16) NOT NULL,
	error TEXT NOT NULL,
	updated FLOAT NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE vm_networks (
	session VARCHAR(255) NOT NULL,
	vm_id VARCHAR(255) NOT NULL,
	position INTEGER NOT NULL,
	portgroup VARCHAR(255) NOT NULL,
	PRIMARY KEY (session, vm_id, position)
);

CREATE TABLE vms (
	session VARCHAR(255) NOT NULL,
	id VARCHAR(255) NOT NULL,
	name VARCHAR(255) NOT NULL,
	host VARCHAR(255) NOT NULL,
	power VARCHAR(16) NOT NULL,
	PRIMARY KEY (session, id)
);

CREATE INDEX ix_vms_name ON vms (name);
