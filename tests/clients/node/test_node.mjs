// test_node.mjs: the Node.js driver (mongodb@6 from npm) against devdb (issue 3, point 9).
//
// Run by run_node_test.sh, which installs the locked driver into a build-dir cache and passes
// MINICRM_NODE_MODULES_DIR; the server URI comes from MINICRM_TEST_MONGO_URI (with_devdb.py
// starts a private devdb). Checks, each against real outcomes read back from the server:
// connect + ping + buildInfo; CRUD (insertOne/insertMany, find with filter/sort/projection,
// updateOne $set/$inc, updateMany, replaceOne, upsert, deleteOne/deleteMany, countDocuments);
// `comment` on write commands (mongodb@6 sends it; pymongo 3.11 cannot); a batchSize 7 cursor
// over 250 documents drained through getMore (counted with command monitoring); duplicate-key
// errors (code 11000, MongoDB's E11000 message shape) and an unordered insertMany that reports
// the duplicate and stores the rest. Exit status 1 if any check failed.
import { createRequire } from 'node:module';
import { join } from 'node:path';

const modulesDir = process.env.MINICRM_NODE_MODULES_DIR;
const uri = process.env.MINICRM_TEST_MONGO_URI;
if (!modulesDir || !uri) {
  console.error('need MINICRM_NODE_MODULES_DIR and MINICRM_TEST_MONGO_URI (run via run_node_test.sh)');
  process.exit(1);
}
const require = createRequire(join(modulesDir, 'package.json'));
const { MongoClient, MongoServerError, MongoBulkWriteError } = require('mongodb');

const failures = [];
function check(cond, what) {
  console.log((cond ? 'ok   ' : 'FAIL ') + what);
  if (!cond) failures.push(what);
}
const json = (v) => JSON.stringify(v);

const client = new MongoClient(uri, {
  monitorCommands: true,
  serverSelectionTimeoutMS: 10000,
  socketTimeoutMS: 10000,
});
const commands = [];
client.on('commandStarted', (ev) => commands.push({ name: ev.commandName, cmd: ev.command }));
const dbName = 'node_client_' + Math.random().toString(16).slice(2, 10);

async function sectionConnect(db, admin) {
  const ping = await admin.command({ ping: 1 });
  check(ping.ok === 1, 'ping answers ok: 1');
  const info = await admin.command({ buildInfo: 1 });
  check(/^\d+\.\d+\.\d+/.test(String(info.version)), 'buildInfo reports a version: ' + info.version);

}

async function sectionCrud(db, admin) {
  const c = db.collection('people');
  let r = await c.insertOne({ _id: 1, name: 'ada', age: 36 });
  check(r.acknowledged && r.insertedId === 1, 'insertOne returns the _id');
  r = await c.insertMany([{ _id: 2, name: 'alan', age: 41 }, { _id: 3, name: 'grace', age: 85 },
    { _id: 4, name: 'linus', age: 20 }]);
  check(r.insertedCount === 3 && json(r.insertedIds) === json({ 0: 2, 1: 3, 2: 4 }),
    'insertMany inserts 3: ' + json(r.insertedIds));
  const oid = (await c.insertOne({ name: 'no-id', age: 1 })).insertedId;
  check((await c.findOne({ _id: oid }))?.name === 'no-id', 'a driver-generated ObjectId _id round-trips');
  const docs = await c.find({ age: { $gte: 30 } }, { projection: { name: 1, _id: 0 } }).sort({ age: -1 }).toArray();
  check(json(docs) === json([{ name: 'grace' }, { name: 'alan' }, { name: 'ada' }]),
    'find with filter, projection and descending sort: ' + json(docs));
  r = await c.updateOne({ _id: 1 }, { $set: { name: 'ada lovelace' }, $inc: { age: 1 } });
  check(r.matchedCount === 1 && r.modifiedCount === 1, 'updateOne matches and modifies 1');
  const d1 = await c.findOne({ _id: 1 });
  check(d1.name === 'ada lovelace' && d1.age === 37, 'updateOne applied $set and $inc: ' + json(d1));
  r = await c.updateMany({ age: { $lt: 50 } }, { $set: { young: true } });
  check(r.matchedCount === 4 && r.modifiedCount === 4, `updateMany matched/modified ${r.matchedCount}/${r.modifiedCount}, want 4/4`);
  r = await c.replaceOne({ _id: 4 }, { name: 'torvalds' });
  check(r.modifiedCount === 1 && json(await c.findOne({ _id: 4 })) === json({ _id: 4, name: 'torvalds' }),
    'replaceOne replaces the whole document and keeps _id');
  r = await c.updateOne({ _id: 99 }, { $set: { name: 'new' } }, { upsert: true });
  check(r.upsertedId === 99 && r.upsertedCount === 1, 'updateOne with upsert reports upsertedId 99');
  check(await c.countDocuments({}) === 6, 'countDocuments counts 6');
  check(await c.countDocuments({ young: true }) === 3, 'countDocuments with a filter counts 3');
  r = await c.deleteOne({ _id: 99 });
  check(r.deletedCount === 1 && (await c.findOne({ _id: 99 })) === null, 'deleteOne removes _id 99');
  r = await c.deleteMany({ young: true });
  check(r.deletedCount === 3, 'deleteMany removes the 3 young ones, got ' + r.deletedCount);
  const left = (await c.find().toArray()).map((d) => d._id).sort();
  check(json(left) === json([3, 4]), 'the remaining _ids are 3 and 4: ' + json(left));

}

// `comment` on every write command: what the CRUD *-comment spec tests check and pymongo 3.11
// cannot send. The server must accept it (string or document) and do the write.
async function sectionComment(db, admin) {
  const c = db.collection('comments');
  commands.length = 0;
  await c.insertOne({ _id: 50 }, { comment: 'ins' });
  await c.updateOne({ _id: 50 }, { $set: { a: 1 } }, { comment: { k: 'upd' } });
  check((await c.findOne({ _id: 50 }))?.a === 1, 'update with a document comment applied $set');
  await c.deleteOne({ _id: 50 }, { comment: 'del' });
  await c.bulkWrite([{ insertOne: { document: { _id: 51 } } }, { deleteOne: { filter: { _id: 51 } } }],
    { comment: 'bulk' });
  const sentComments = commands.filter((x) => 'comment' in x.cmd).map((x) => x.name);
  check(json(sentComments) === json(['insert', 'update', 'delete', 'insert', 'delete']),
    'insert/update/delete/bulkWrite with comment are accepted (sent: ' + json(sentComments) + ')');
  check((await c.find({ _id: { $in: [50, 51] } }).toArray()).length === 0,
    'and the deletes with comments deleted');
}

async function sectionCursor(db, admin) {
  const big = db.collection('big');
  await big.insertMany(Array.from({ length: 250 }, (_, i) => ({ _id: i, v: i * 2, pad: 'x'.repeat(20) })));
  commands.length = 0;
  const ids = (await big.find({}, { batchSize: 7 }).sort({ _id: 1 }).toArray()).map((d) => d._id);
  check(json(ids) === json(Array.from({ length: 250 }, (_, i) => i)),
    'a batchSize 7 cursor returns all 250 documents in order');
  const nGetMore = commands.filter((x) => x.name === 'getMore').length;
  check(nGetMore >= Math.floor(250 / 7), `the cursor was drained with getMore (${nGetMore} getMore commands)`);
  const cur = big.find({}, { batchSize: 5 });
  const first = await cur.next();
  await cur.close();
  check(first && (await admin.command({ ping: 1 })).ok === 1,
    'closing a half-read cursor (killCursors) leaves the server healthy');

}

async function sectionDuplicates(db, admin) {
  const c = db.collection('dups');
  await c.insertMany([{ _id: 3, name: 'grace' }, { _id: 4 }]);
  try {
    await c.insertOne({ _id: 3, name: 'dup' });
    check(false, 'a duplicate _id is rejected');
  } catch (e) {
    check(e instanceof MongoServerError && e.code === 11000, 'duplicate _id: MongoServerError code 11000, got ' + e.code);
    const re = new RegExp(`^E11000 duplicate key error collection: ${dbName}\\.dups index: _id_ dup key: \\{ _id: 3 \\}$`);
    check(re.test(e.message), 'duplicate _id message has MongoDB\'s shape: ' + e.message);
  }
  const u = db.collection('emails'); // its own collection: a unique index treats a missing field as null
  await u.createIndex({ email: 1 }, { unique: true, name: 'email_1' });
  await u.insertOne({ _id: 10, email: 'a@x.org' });
  try {
    await u.insertOne({ _id: 11, email: 'a@x.org' });
    check(false, 'a duplicate on a unique index is rejected');
  } catch (e) {
    check(e.code === 11000 && e.message.includes('index: email_1 dup key: { email: "a@x.org" }'),
      'unique secondary index: code 11000 and message names index and key: ' + e.message);
  }
  try {
    await c.insertMany([{ _id: 20 }, { _id: 3 }, { _id: 21 }], { ordered: false });
    check(false, 'unordered insertMany with a duplicate is rejected');
  } catch (e) {
    const we = e instanceof MongoBulkWriteError ? e.writeErrors : [];
    const arr = Array.isArray(we) ? we : [we];
    check(arr.length === 1 && arr[0].index === 1 && arr[0].code === 11000,
      'unordered insertMany reports one writeError at index 1 code 11000: ' + json(arr.map((w) => w.errInfo ?? w.errmsg)));
    check(e.result?.insertedCount === 2, 'and inserts the other two (insertedCount ' + e.result?.insertedCount + ')');
  }
  const stored = (await c.find({ _id: { $in: [20, 21] } }).toArray()).map((d) => d._id).sort();
  check(json(stored) === json([20, 21]), 'documents 20 and 21 are stored: ' + json(stored));
  check(json((await u.find({ email: 'a@x.org' }).toArray()).map((d) => d._id)) === json([10]),
    'the duplicate email was not stored');
}

try {
  await client.connect();
  const db = client.db(dbName);
  const admin = client.db('admin');
  // Sections use their own collections, so one failure hides nothing else.
  for (const section of [sectionConnect, sectionCrud, sectionComment, sectionCursor, sectionDuplicates]) {
    try {
      await section(db, admin);
    } catch (e) {
      check(false, `${section.name} raised: ` + (e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e));
    }
  }
  await db.dropDatabase();
} catch (e) {
  check(false, 'unexpected error: ' + (e && e.stack ? e.stack : e));
} finally {
  await client.close();
}
if (failures.length) {
  console.log(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('all Node.js driver checks passed');
