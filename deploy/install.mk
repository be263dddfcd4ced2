# deploy/install.mk — `make install`, included by the top Makefile.
#
#   make install                          everything under /usr/local and /etc
#   make install PREFIX=/usr DESTDIR=pkg  staged, for packaging
#
# Installs the programs, the systemd unit (its ExecStart rewritten to
# $(BINDIR)), sysusers.d and tmpfiles.d entries, the logrotate file, example
# configuration (as *.example: a real gateway.json or policy.json is never
# touched) and the documentation. Never creates users or starts anything:
# the closing message lists those steps.

PREFIX           ?= /usr/local
BINDIR           ?= $(PREFIX)/bin
DOCDIR           ?= $(PREFIX)/share/doc/smc-gateway
SYSCONFDIR       ?= /etc
SYSTEMD_UNIT_DIR ?= /lib/systemd/system
SYSUSERS_DIR     ?= /usr/lib/sysusers.d
TMPFILES_DIR     ?= /usr/lib/tmpfiles.d
LOGROTATE_DIR    ?= $(SYSCONFDIR)/logrotate.d
INSTALL          ?= install
BUILD            ?= build

GW_INSTALL_PROGS := $(BUILD)/smc-gateway $(BUILD)/smc-gateway-audit

.PHONY: install
install: all $(GW_INSTALL_PROGS)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 0755 $(GW_INSTALL_PROGS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSTEMD_UNIT_DIR)
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' \
	    -e 's|file:/usr/local/share/doc/smc-gateway/|file:$(DOCDIR)/|g' \
	    deploy/systemd/smc-gateway.service > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/smc-gateway.service.tmp
	chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/smc-gateway.service.tmp
	mv -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/smc-gateway.service.tmp $(DESTDIR)$(SYSTEMD_UNIT_DIR)/smc-gateway.service
	$(INSTALL) -D -m 0644 deploy/systemd/smc-gateway.sysusers $(DESTDIR)$(SYSUSERS_DIR)/smc-gateway.conf
	$(INSTALL) -D -m 0644 deploy/systemd/smc-gateway.tmpfiles $(DESTDIR)$(TMPFILES_DIR)/smc-gateway.conf
	$(INSTALL) -D -m 0644 deploy/logrotate/smc-gateway $(DESTDIR)$(LOGROTATE_DIR)/smc-gateway
	$(INSTALL) -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/smc-gateway
	$(INSTALL) -m 0640 deploy/examples/gateway.json $(DESTDIR)$(SYSCONFDIR)/smc-gateway/gateway.json.example
	$(INSTALL) -m 0640 deploy/examples/policy.json $(DESTDIR)$(SYSCONFDIR)/smc-gateway/policy.json.example
	$(INSTALL) -d -m 0755 $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0644 deploy/README.md $(DESTDIR)$(DOCDIR)/README.md
	$(INSTALL) -m 0644 policy/README.md $(DESTDIR)$(DOCDIR)/policy.md
	$(INSTALL) -m 0644 deploy/openapi.yaml $(DESTDIR)$(DOCDIR)/openapi.yaml
	$(INSTALL) -m 0644 deploy/examples/gateway.json $(DESTDIR)$(DOCDIR)/gateway.example.json
	$(INSTALL) -m 0644 deploy/examples/policy.json $(DESTDIR)$(DOCDIR)/policy.example.json
	@echo
	@echo "Installed smc-gateway into $(DESTDIR)$(BINDIR). Next, as root (see $(DOCDIR)/README.md):"
	@echo "  systemd-sysusers smc-gateway.conf && systemd-tmpfiles --create smc-gateway.conf"
	@echo "  write $(SYSCONFDIR)/smc-gateway/gateway.json and policy.json from the .example files,"
	@echo "  add credentials.json, the keys and certificates, then"
	@echo "  systemctl daemon-reload && systemctl enable --now smc-gateway"
