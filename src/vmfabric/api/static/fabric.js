// The fabric as a picture (SVG): switches on top with their edge ports, each port with its
// VLANs (static grey, dynamic blue with *), hypervisors below with their VMs, and one line
// per uplink as CDP/LLDP (solid) or static wiring (dashed) placed it. Hosts are ordered
// by where their uplinks land, so lines cross little.

const NS = "http://www.w3.org/2000/svg";
const PORT_W = 96;
const PORT_H = 26;
const SWITCH_H = 44;
const SWITCH_GAP = 40;
const HOST_W = 150;
const HOST_GAP = 16;
const HOST_TOP = 250;
const VM_LINE = 14;
const VMS_SHOWN = 8;
const MARGIN = 16;

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

const natural = new Intl.Collator(undefined, { numeric: true }).compare;

// switch -> sorted ports, from the interfaces (edge ports) and the hosts' uplinks.
function switchPorts(data) {
  const ports = new Map();
  const add = (sw, port) => {
    if (!ports.has(sw)) ports.set(sw, new Set());
    ports.get(sw).add(port);
  };
  for (const s of data.switches) ports.set(s.name, ports.get(s.name) || new Set());
  for (const i of data.interfaces) add(i.switch, i.port);
  for (const h of data.hosts) for (const u of h.uplinks) add(u.switch, u.port);
  return new Map(
    [...ports.keys()].sort(natural).map((sw) => [sw, [...ports.get(sw)].sort(natural)]),
  );
}

function vlanText(iface) {
  const text = el("text", { class: "vlans" });
  if (!iface || !iface.vlans.length) {
    text.appendChild(el("tspan", { class: "static" }, iface && iface.mode === "open" ? "all" : "–"));
    return text;
  }
  const dynamic = new Set(iface.dynamic_vlans);
  iface.vlans.forEach((vlan, i) => {
    if (i) text.appendChild(el("tspan", { class: "static" }, ","));
    const kind = dynamic.has(vlan) ? "dynamic" : "static";
    const span = el("tspan", { class: `vlan ${kind}`, "data-vlan": vlan }, `${vlan}${kind === "dynamic" ? "*" : ""}`);
    text.appendChild(span);
  });
  return text;
}

function drawSwitches(svg, data, ports, hits) {
  const states = new Map(data.switches.map((s) => [s.name, s]));
  const interfaces = new Map(data.interfaces.map((i) => [`${i.switch}\u0000${i.port}`, i]));
  const where = new Map();
  let x = MARGIN;
  for (const [name, list] of ports) {
    const width = Math.max(170, list.length * PORT_W + 20);
    const g = el("g", { class: "switch", "data-switch": name, transform: `translate(${x},${MARGIN})` });
    g.appendChild(el("rect", { class: "body", width, height: SWITCH_H + PORT_H }));
    g.appendChild(el("text", { class: "name", x: 10, y: 20 }, name));
    const state = states.get(name);
    if (state) {
      const label = el("text", { class: `state ${state.state}`, x: 10, y: 36 }, state.state);
      if (state.error || state.last_error) label.appendChild(el("title", {}, state.error || state.last_error));
      g.appendChild(label);
    }
    list.forEach((port, i) => {
      const px = 10 + i * PORT_W;
      const iface = interfaces.get(`${name}\u0000${port}`);
      const hit = hits.ports.has(`${name}\u0000${port}`);
      const pg = el("g", {
        class: `port${iface && iface.mode === "open" ? " open" : ""}${hit ? " hit" : ""}`,
        "data-switch": name,
        "data-port": port,
        transform: `translate(${px},${SWITCH_H})`,
      });
      pg.appendChild(el("rect", { width: PORT_W - 8, height: PORT_H - 4 }));
      pg.appendChild(el("text", { class: "pname", x: 4, y: 14 }, port));
      const vlans = vlanText(iface);
      vlans.setAttribute("x", 0);
      vlans.setAttribute("y", PORT_H + 12);
      pg.appendChild(vlans);
      g.appendChild(pg);
      where.set(`${name}\u0000${port}`, { x: x + px + (PORT_W - 8) / 2, y: MARGIN + SWITCH_H + PORT_H + 18 });
    });
    svg.appendChild(g);
    x += width + SWITCH_GAP;
  }
  return { where, width: x };
}

function orderHosts(hosts, where) {
  const centre = (h) => {
    const xs = h.uplinks.map((u) => where.get(`${u.switch}\u0000${u.port}`)).filter(Boolean).map((p) => p.x);
    return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Infinity;
  };
  return [...hosts].sort((a, b) => centre(a) - centre(b) || natural(a.name, b.name));
}

function drawHost(svg, host, x, vms, hits) {
  const shown = vms.slice(0, VMS_SHOWN);
  const height = 30 + Math.max(1, shown.length) * VM_LINE + (vms.length > VMS_SHOWN ? VM_LINE : 0);
  const g = el("g", {
    class: `host${hits.hosts.has(host.key) ? " hit" : ""}`,
    "data-host": host.name,
    "data-session": host.session,
    transform: `translate(${x},${HOST_TOP})`,
  });
  g.appendChild(el("rect", { class: "body", width: HOST_W, height }));
  g.appendChild(el("text", { class: "name", x: 8, y: 18 }, host.name));
  shown.forEach((vm, i) => {
    const y = 34 + i * VM_LINE;
    g.appendChild(el("circle", { class: vm.power_state === "poweredOn" ? "on" : "off", cx: 12, cy: y - 4, r: 4 }));
    const label = el("text", { class: `vm${hits.vms.has(vm.name) ? " hit" : ""}`, "data-vm": vm.name, x: 20, y }, vm.name);
    label.appendChild(el("title", {}, vm.networks.map((n) => `${n.portgroup} (VLAN ${n.vlan ?? "none"})`).join(", ")));
    g.appendChild(label);
  });
  if (!vms.length) g.appendChild(el("text", { class: "more", x: 8, y: 34 }, "no VMs"));
  if (vms.length > VMS_SHOWN) {
    g.appendChild(el("text", { class: "more", x: 20, y: 34 + VMS_SHOWN * VM_LINE }, `+${vms.length - VMS_SHOWN} more`));
  }
  svg.appendChild(g);
  return height;
}

function drawLinks(svg, host, x, where, hits) {
  host.uplinks.forEach((u, i) => {
    const from = where.get(`${u.switch}\u0000${u.port}`);
    if (!from) return;
    const to = { x: x + 20 + (i * (HOST_W - 40)) / Math.max(1, host.uplinks.length - 1), y: HOST_TOP };
    const mid = (from.y + to.y) / 2;
    const hit = hits.hosts.has(host.key) && hits.ports.has(`${u.switch}\u0000${u.port}`);
    svg.insertBefore(el("path", {
      class: `link ${u.source === "static" ? "static" : "lldp"}${hit ? " hit" : ""}`,
      "data-host": host.name,
      "data-switch": u.switch,
      "data-port": u.port,
      d: `M${from.x},${from.y} C${from.x},${mid} ${to.x},${mid} ${to.x},${to.y}`,
    }), svg.firstChild);
    svg.appendChild(el("text", { class: "nic", x: to.x + 3, y: to.y - 4 }, `${u.nic} (${u.source})`));
  });
}

// Draw everything into <svg>; hits = {vms, hosts, ports} (Sets) to highlight.
export function drawFabric(svg, data, hits) {
  svg.replaceChildren();
  const ports = switchPorts(data);
  const { where, width } = drawSwitches(svg, data, ports, hits);
  const byHost = new Map();
  for (const vm of data.vms) {
    const key = `${vm.session}\u0000${vm.host}`;
    if (!byHost.has(key)) byHost.set(key, []);
    byHost.get(key).push(vm);
  }
  let x = MARGIN;
  let bottom = HOST_TOP;
  for (const host of orderHosts(data.hosts, where)) {
    host.key = `${host.session}\u0000${host.name}`;
    const vms = (byHost.get(host.key) || []).sort((a, b) => natural(a.name, b.name));
    bottom = Math.max(bottom, HOST_TOP + drawHost(svg, host, x, vms, hits));
    drawLinks(svg, host, x, where, hits);
    x += HOST_W + HOST_GAP;
  }
  const w = Math.max(width, x) + MARGIN;
  svg.setAttribute("width", w);
  svg.setAttribute("height", bottom + MARGIN);
  svg.setAttribute("viewBox", `0 0 ${w} ${bottom + MARGIN}`);
  return { switches: ports.size, hosts: data.hosts.length, vms: data.vms.length };
}
