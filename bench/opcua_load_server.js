// The load server of bench_opcua.py on node-opcua: fast enough that the collector, not the server, is measured.
// usage: node opcua_load_server.js <port> <machines> <sensor,sensor,...> <values per second>
// Objects/Plant/BENCH-0001..N/<sensor> (Double) in namespace urn:vigil:bench; every 10 ms the values due at the
// target rate (at most a tenth of the variables per tick) are written round-robin over all variables, value
// i = 1, 2, 3, ... with its own source timestamp.
// Prints "READY" once it listens, then "W <written> <seconds> <CPU seconds>" every 0.5 s.
const { OPCUAServer, Variant, DataType, StatusCodes, SecurityPolicy, MessageSecurityMode } = require("node-opcua");

(async () => {
  const [port, machines, sensors, rate] = [
    parseInt(process.argv[2], 10), parseInt(process.argv[3], 10), process.argv[4].split(","), parseFloat(process.argv[5]),
  ];
  const server = new OPCUAServer({
    port,
    resourcePath: "/bench/",
    securityPolicies: [SecurityPolicy.None],
    securityModes: [MessageSecurityMode.None],
    allowAnonymous: true,
    maxConnections: 20,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:vigil:bench");
  const plant = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Plant" });
  const variables = [];
  for (let m = 1; m <= machines; m++) {
    const id = `BENCH-${String(m).padStart(4, "0")}`;
    const obj = ns.addObject({ organizedBy: plant, browseName: id });
    for (const sensor of sensors) {
      variables.push(ns.addVariable({
        componentOf: obj, browseName: sensor, nodeId: `s=${id}.${sensor}`, dataType: "Double", minimumSamplingInterval: 0,
        value: new Variant({ dataType: DataType.Double, value: 0 }),
      }));
    }
  }
  await server.start();
  console.log("READY");
  const started = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  let written = 0;
  let lastReport = 0;
  setInterval(() => {
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    // At most a tenth of the variables per tick, so a variable changes at most every 10 ticks (>= 100 ms) even
    // when the server runs late and catches up: node-opcua samples each variable (~50 ms) and would report only
    // the last of two quick changes. A server that cannot keep up falls short of the target rate, visibly.
    const due = Math.min(Math.floor(elapsed * rate) - written, Math.max(1, Math.floor(variables.length / 10)));
    for (let k = 0; k < due; k++) {
      written += 1;
      const v = variables[written % variables.length];
      v.setValueFromSource(new Variant({ dataType: DataType.Double, value: written }), StatusCodes.Good, new Date());
    }
    if (elapsed - lastReport >= 0.5) {
      lastReport = elapsed;
      const cpu = process.cpuUsage(cpu0);
      console.log(`W ${written} ${elapsed.toFixed(3)} ${((cpu.user + cpu.system) / 1e6).toFixed(3)}`);
    }
  }, 10);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
