// dtype conversions (round to nearest even, exact widening) and the logger's line format.
#include <cmath>
#include <limits>

#include "core/dtype.h"
#include "core/logging.h"
#include "tests/test_util.h"

namespace ixc {
namespace {

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties go up to the even one.
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Bf16ToF32(F32ToBf16(-std::numeric_limits<float>::infinity())), -std::numeric_limits<float>::infinity());
}

TEST(DTypeTest, F16ConversionsAndBulkWidening) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(F32ToF16(65504.f)), 65504.f);  // largest finite f16
  EXPECT_EQ(F16ToF32(F32ToF16(1e6f)), std::numeric_limits<float>::infinity());
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    auto data = testing::RandomTyped(dtype, 37, 3);  // 37: the vector loop and the scalar tail both run
    std::vector<float> wide(37);
    ConvertToF32(dtype, data.bytes.data(), wide.data(), 37);
    EXPECT_EQ(wide, data.as_f32) << DTypeName(dtype);
  }
  EXPECT_EQ(*DTypeFromName("BF16"), DType::kBF16);
  EXPECT_FALSE(DTypeFromName("I8").ok());
}

TEST(LoggingTest, LinesCarryTheRank) {
  ::testing::internal::CaptureStderr();
  SetLogRank(3);
  IXC_LOG(INFO) << "loaded " << 7 << " tensors";
  SetLogRank(-1);
  IXC_LOG(WARNING) << "no rank";
  const std::string text = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(text.find(" r3 dtype_logging_test.cc:"), std::string::npos) << text;
  EXPECT_NE(text.find("] loaded 7 tensors\n"), std::string::npos) << text;
  EXPECT_EQ(text.find(" r-1 "), std::string::npos) << text;
  EXPECT_EQ(text.find("W "), text.find("\n") + 1) << text;
}

}  // namespace
}  // namespace ixc
