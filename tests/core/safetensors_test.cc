// The safetensors reader on hand-built files: good single files and shards, and every header defect we validate,
// each of which must produce an error naming the file and the tensor.
#include <filesystem>
#include <fstream>

#include "core/npy.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

namespace ixc {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ixc_safetensors_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a safetensors file with the given header JSON and `data_bytes` bytes of data 0, 1, 2, ...
  std::string Write(const std::string& name, const std::string& header, size_t data_bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    const uint64_t size = header.size();
    out.write(reinterpret_cast<const char*>(&size), 8);
    out << header;
    for (size_t i = 0; i < data_bytes; ++i) out.put(static_cast<char>(i));
    return path;
  }

  std::string Error(const std::string& header, size_t data_bytes) {
    auto file = SafetensorsFile::Open(Write("bad.safetensors", header, data_bytes));
    EXPECT_FALSE(file.ok());
    return file.ok() ? "" : std::string(file.status().message());
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, ReadsTensorsInPlace) {
  const std::string path = Write("model.safetensors",
                                 R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                                 R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
                                 R"("ids":{"dtype":"I64","shape":[1],"data_offsets":[24,32]},)"
                                 R"("__metadata__":{"format":"pt"}})",
                                 32);
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  auto b = (*file)->Tensor("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->dtype, DType::kBF16);
  EXPECT_EQ(b->ShapeString(), "BF16[3]");
  EXPECT_EQ(b->as<uint8_t>()[0], 16);  // the 17th data byte
  // An I64 tensor does not stop the file from opening; asking for its view is the error.
  auto ids = (*file)->Tensor("ids");
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("tensor 'ids'"), std::string::npos);
}

TEST_F(SafetensorsTest, AnEmptyTensorMayHaveHugeSizesBesideAZero) {
  auto file = SafetensorsFile::Open(
      Write("empty.safetensors", R"({"e":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->entries().at("e").end, 0u);
}

TEST_F(SafetensorsTest, RejectsHeaderDefectsNamingFileAndTensor) {
  EXPECT_NE(Error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16).find("tensor 'w'"),
            std::string::npos);
  EXPECT_NE(Error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8).find("outside"),
            std::string::npos);
  EXPECT_NE(Error(R"({"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})", 4).find("unknown dtype 'Q4'"),
            std::string::npos);
  EXPECT_NE(Error(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4).find("negative"),
            std::string::npos);
  EXPECT_NE(Error(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  12)
                .find("overlap"),
            std::string::npos);
  // 2^32 x 2^32 elements wrap around to 0 in 64 bits: that must not pass for an empty tensor of 0 bytes.
  EXPECT_NE(Error(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0)
                .find("holds more elements than the 0-byte data section"),
            std::string::npos);
  EXPECT_NE(Error(R"({"w":{"dtype":"F32"}})", 0).find("needs dtype, shape and data_offsets"), std::string::npos);
  EXPECT_NE(Error("not json", 0).find("not a JSON object"), std::string::npos);
  const std::string message = Error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16);
  EXPECT_NE(message.find("bad.safetensors"), std::string::npos) << message;
}

TEST_F(SafetensorsTest, RejectsTruncatedAndHugeHeaders) {
  const std::string path = (dir_ / "short.safetensors").string();
  std::ofstream(path) << "abc";
  EXPECT_NE(std::string(SafetensorsFile::Open(path).status().message()).find("too short"), std::string::npos);
  const std::string huge = (dir_ / "huge.safetensors").string();
  std::ofstream out(huge, std::ios::binary);
  const uint64_t size = 1ull << 40;
  out.write(reinterpret_cast<const char*>(&size), 8);
  out << "{}";
  out.close();
  EXPECT_NE(std::string(SafetensorsFile::Open(huge).status().message()).find("does not fit"), std::string::npos);
}

TEST_F(SafetensorsTest, CheckpointFollowsTheIndex) {
  Write("part-1.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  Write("part-2.safetensors", R"({"b":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4);
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"a":"part-1.safetensors","b":"part-2.safetensors"}})";
  auto ckpt = Checkpoint::Open(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->Names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(ckpt->Tensor("b", {2}).ok());
  auto wrong_shape = ckpt->Tensor("b", {3});
  ASSERT_FALSE(wrong_shape.ok());
  EXPECT_NE(wrong_shape.status().message().find("part-2.safetensors: tensor 'b' has shape [2], the config implies [3]"),
            std::string::npos)
      << wrong_shape.status();
  EXPECT_NE(std::string(ckpt->Tensor("c").status().message()).find("no tensor 'c'"), std::string::npos);
}

TEST_F(SafetensorsTest, IndexNamingAMissingTensorOrShardIsAnError) {
  Write("part-1.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map":{"a":"part-1.safetensors","z":"part-1.safetensors"}})";
  auto ckpt = Checkpoint::Open(dir_.string());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(ckpt.status().message().find("tensor 'z' is mapped to part-1.safetensors"), std::string::npos);
  std::ofstream(dir_ / "model.safetensors.index.json") << R"({"weight_map":{"a":"gone.safetensors"}})";
  ckpt = Checkpoint::Open(dir_.string());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(ckpt.status().message().find("gone.safetensors"), std::string::npos);
}

TEST_F(SafetensorsTest, DirectoryErrors) {
  EXPECT_EQ(Checkpoint::Open((dir_ / "absent").string()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(Checkpoint::Open(dir_.string()).status().message()).find("neither"), std::string::npos);
  std::ofstream(dir_ / "pytorch_model.bin") << "x";
  EXPECT_NE(std::string(Checkpoint::Open(dir_.string()).status().message()).find("convert_bin_to_safetensors"),
            std::string::npos);
}

TEST_F(SafetensorsTest, NpyRoundTrip) {
  const std::vector<float> values = {1.5f, -2.f, 0.f, 3.25f, 7.f, 8.f};
  const std::string path = (dir_ / "a.npy").string();
  ASSERT_TRUE(WriteNpyF32(path, {2, 3}, values.data()).ok());
  auto array = ReadNpy(path);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(array->floats, values);
  const std::vector<int32_t> ids = {4, 5, 6};
  ASSERT_TRUE(WriteNpyI32(path, {3}, ids.data()).ok());
  EXPECT_EQ(ReadNpy(path)->ints, (std::vector<int64_t>{4, 5, 6}));
}

}  // namespace
}  // namespace ixc
