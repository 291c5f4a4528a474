#include "model/batch_metadata.h"

#include <algorithm>
#include <bit>

namespace ixc::model {
namespace {

int64_t DecodeBucket(int64_t max_visible) {
  return std::max<int64_t>(256, static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(max_visible))));
}

// Three masks of n rows each, one after the other, as bytes from `bytes` on.
void StoreMasks(const RowMasks& masks, uint8_t* bytes) {
  const size_t n = masks.image.size();
  std::copy(masks.image.begin(), masks.image.end(), bytes);
  std::copy(masks.web.begin(), masks.web.end(), bytes + n);
  std::copy(masks.write.begin(), masks.write.end(), bytes + 2 * n);
}

}  // namespace

BatchMetadata LayOutBatch(const std::vector<Segment>& segments, int64_t rows, const BatchLayoutOptions& options) {
  BatchMetadata out;
  out.wanted.resize(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    out.wanted[i] = LogitTokens(segments[i]);
    for (int64_t t : out.wanted[i]) out.logit_rows.push_back(segments[i].first_row + t);
  }

  std::vector<int32_t> positions(rows), slots(rows, -1), ids(rows, -1), last_key(rows), tables;
  std::vector<int64_t> table_start(segments.size());  // within `tables`
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& segment = segments[i];
    const SequenceKv& seq = *segment.seq;
    std::copy(segment.positions.begin(), segment.positions.end(), positions.begin() + segment.first_row);
    if (!segment.input->ids.empty()) {
      std::copy(segment.input->ids.begin(), segment.input->ids.end(), ids.begin() + segment.first_row);
    }
    for (int64_t t = 0; t < segment.tokens; ++t) {
      last_key[segment.first_row + t] =
          static_cast<int32_t>(std::upper_bound(seq.positions.begin(), seq.positions.end(), segment.positions[t]) -
                               seq.positions.begin() - 1);
    }
    for (size_t s = 0; s < segment.stored.size(); ++s) {
      const int64_t slot_index = segment.past + static_cast<int64_t>(s);
      slots[segment.first_row + segment.stored[s]] =
          seq.block_table[slot_index / options.block_size] * options.block_size + slot_index % options.block_size;
    }
    table_start[i] = static_cast<int64_t>(tables.size());
    tables.insert(tables.end(), seq.block_table.begin(), seq.block_table.end());
  }
  // Decode runs, with their rows' table offsets still relative to `tables`.
  struct Run {
    DecodeRunLayout layout;
    std::vector<int32_t> tables, visible;
  };
  // Row `row` of segment i onto the last of `runs`, a new one starting at `first_row` where `starts_new`.
  auto add_row = [&](std::vector<Run>& runs, bool starts_new, int64_t first_row, size_t i, int64_t row) {
    if (starts_new) runs.emplace_back().layout.first_row = first_row;
    Run& run = runs.back();
    run.tables.push_back(static_cast<int32_t>(table_start[i]));
    run.visible.push_back(last_key[row] + 1);
    run.layout.max_visible = std::max<int64_t>(run.layout.max_visible, run.visible.back());
    ++run.layout.rows;
  };
  std::vector<Run> runs;
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& segment = segments[i];
    if (segment.tokens > options.decode_max_tokens) continue;
    const bool starts_new = runs.empty() ||
                            runs.back().layout.first_row + runs.back().layout.rows != segment.first_row ||
                            runs.back().layout.rows + segment.tokens > options.decode_rows_per_launch;
    for (int64_t t = 0; t < segment.tokens; ++t) {
      add_row(runs, starts_new && t == 0, segment.first_row, i, segment.first_row + t);
    }
  }
  // The logit rows as decode runs over their compacted indices.
  std::vector<Run> logit_runs;
  int64_t compacted = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    for (int64_t t : out.wanted[i]) {
      const bool starts_new = logit_runs.empty() || logit_runs.back().layout.rows == options.decode_rows_per_launch;
      add_row(logit_runs, starts_new, compacted++, i, segments[i].first_row + t);
    }
  }

  // positions, slots, ids, last_key; per run its table offsets and visible keys, then per logit run; the masks of
  // every row, then of the logit rows; the block tables.
  const int64_t logit_count = static_cast<int64_t>(out.logit_rows.size());
  int64_t run_ints = 2 * logit_count;
  for (const Run& run : runs) run_ints += 2 * run.layout.rows;
  const int64_t tables_base = 4 * rows + run_ints + (3 * rows + 3) / 4 + (3 * logit_count + 3) / 4;
  std::vector<int32_t>& ints = out.ints;
  ints.reserve(tables_base + tables.size());
  out.positions_at = 0;
  out.slots_at = rows;
  out.ids_at = 2 * rows;
  out.last_key_at = 3 * rows;
  for (const std::vector<int32_t>* part : {&positions, &slots, &ids, &last_key}) {
    ints.insert(ints.end(), part->begin(), part->end());
  }
  auto store_runs = [&](std::vector<Run>& from, bool bucket, std::vector<DecodeRunLayout>& to) {
    for (Run& run : from) {
      DecodeRunLayout& layout = to.emplace_back(run.layout);
      if (bucket) layout.max_visible = DecodeBucket(layout.max_visible);
      layout.table_offsets_at = static_cast<int64_t>(ints.size());
      for (int32_t start : run.tables) ints.push_back(static_cast<int32_t>(tables_base + start));
      layout.visible_at = static_cast<int64_t>(ints.size());
      ints.insert(ints.end(), run.visible.begin(), run.visible.end());
    }
  };
  store_runs(runs, options.bucket_decode, out.decode_runs);
  store_runs(logit_runs, false, out.logit_runs);
  out.masks = RowMasksOf(segments, rows);
  out.logit_masks = RowMasksOfRows(out.masks, out.logit_rows);
  out.masks_at = static_cast<int64_t>(ints.size());
  out.logit_masks_at = out.masks_at + (3 * rows + 3) / 4;
  ints.resize(tables_base, 0);
  StoreMasks(out.masks, reinterpret_cast<uint8_t*>(ints.data() + out.masks_at));
  StoreMasks(out.logit_masks, reinterpret_cast<uint8_t*>(ints.data() + out.logit_masks_at));
  for (int64_t start : table_start) out.tables_at.push_back(tables_base + start);
  ints.insert(ints.end(), tables.begin(), tables.end());
  return out;
}

std::vector<int32_t> RingLastKeys(const std::vector<std::vector<int32_t>>& block_positions,
                                  std::span<const int32_t> positions) {
  std::vector<int32_t> last_keys;
  last_keys.reserve(block_positions.size() * positions.size());
  for (const std::vector<int32_t>& block : block_positions) {
    for (int32_t position : positions) {
      last_keys.push_back(
          static_cast<int32_t>(std::upper_bound(block.begin(), block.end(), position) - block.begin() - 1));
    }
  }
  return last_keys;
}

}  // namespace ixc::model
